"""Progress bars on long CLI and notebook work: one tqdm bar per audit stage, fed with (stage, fraction)."""

from __future__ import annotations

from collections.abc import Callable


def stage_bars() -> tuple[Callable[[str, float], None], Callable[[], None]]:
    """A tqdm bar per stage, fed with (stage, fraction)."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def update(stage: str, fraction: float) -> None:
        for name, other in bars.items():
            if name != stage and other.n < 100:
                other.update(100 - other.n)
                other.close()
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(
                total=100,
                desc=f"{stage:>8}",
                unit="%",
                leave=True,
                bar_format="{desc} {bar} {percentage:3.0f}% {elapsed}",
            )
        target = int(round(100 * min(max(fraction, 0.0), 1.0)))
        if target > bar.n:
            bar.update(target - bar.n)

    def close() -> None:
        for bar in bars.values():
            if bar.n < 100:
                bar.update(100 - bar.n)
            bar.close()

    return update, close
