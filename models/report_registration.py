"""The report's view of the per-image registration (models/stages/register.py): the summary row's sentence
and each gallery row's registered copy (the real image turned, rescaled and moved onto it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synthaudit.models.report_plots import thumbnail


@dataclass(frozen=True)
class RegisteredCopy:
    """A generated image that registers to the real one much better than any other real image does, the
    real image turned, rescaled and moved onto it, and the transform."""

    id: str
    src: str  # the generated image
    registered_src: str  # the real image under the transform found
    ncc: float
    baseline: float  # the best NCC of the real image to any other real image
    angle: float
    zoom: float
    dx: float
    dy: float


def registration_text(record: dict[str, Any] | None, copies: list[Any] | None) -> str | None:
    """The per-image registration in words (models/stages/register.py); None where it did not run."""
    if not record or "registration" not in record or copies is None:
        return None
    margin = float(record["registration"].get("margin", 1.0))
    if not copies:
        return (
            "no real image has a registered copy: no generated image, turned, rescaled and moved onto a real "
            f"one, fits it by a Fisher-z margin of {margin:g} better than any other real image does"
        )
    n = len(copies)
    return (
        f"{n} real image{'s' if n != 1 else ''} ha{'ve' if n != 1 else 's'} a registered copy: a generated image "
        f"that, turned, rescaled and moved onto it, fits it by a Fisher-z margin of more than {margin:g} better "
        "than any other real image does; they are ranked first (the gallery shows each beside its copy)"
    )


def registered_copy(data: dict[str, Any], i: int) -> RegisteredCopy | None:
    """Real image i's registered copy (models/stages/register.py) when its evidence counts; else None."""
    from synthaudit.models.alignment import warp

    reg = data.get("registration")
    if reg is None or not reg["strong"][i]:
        return None
    j = int(reg["generated"][i])
    angle, zoom, dx, dy = (float(reg[f][i]) for f in ("angle", "zoom", "dx", "dy"))
    return RegisteredCopy(
        id=data["generated_ids"][j],
        src=thumbnail(data["generated"][j]),
        registered_src=thumbnail(warp(data["real"][i][None], dx, dy, angle, zoom)[0]),
        ncc=float(reg["ncc"][i]),
        baseline=float(reg["baseline"][i]),
        angle=angle,
        zoom=zoom,
        dx=dx,
        dy=dy,
    )
