"""Progress on long CLI and notebook work, fed with (stage, fraction): one tqdm bar per audit stage on a
terminal; on a pipe or a log file (no cursor codes there) one plain line per finished stage."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def stage_lines(stream: TextIO) -> tuple[Callable[[str, float], None], Callable[[], None]]:
    """For logs: "decode: done in 1.2 s", a line per stage as it finishes."""
    current: list[tuple[str, float]] = []  # the stage under way and when it began

    def finish() -> None:
        if current:
            stage, began = current.pop()
            stream.write(f"{stage}: done in {time.perf_counter() - began:.1f} s\n")
            stream.flush()

    def update(stage: str, fraction: float) -> None:
        if not current or current[0][0] != stage:
            finish()
            current.append((stage, time.perf_counter()))

    return update, finish


def stage_bars(stream: TextIO | None = None) -> tuple[Callable[[str, float], None], Callable[[], None]]:
    """A tqdm bar per stage on a terminal (stderr by default), else `stage_lines`."""
    out = sys.stderr if stream is None else stream
    if not (hasattr(out, "isatty") and out.isatty()):
        return stage_lines(out)
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
                file=out,
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
