"""`synthaudit compare`: several generated sets (checkpoints) against one real set and one reference."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthaudit.models.config import AuditConfig


def add_compare_command(
    subparsers: Any,
    add_config_arguments: Callable[[argparse.ArgumentParser], None],
    config_from_args: Callable[[argparse.Namespace], AuditConfig],
) -> None:
    """Register `compare` (the audit's options, a repeatable --generated, an output folder)."""
    compare = subparsers.add_parser(
        "compare",
        help="audit several generated sets (checkpoints) against the same real images: which can be shared?",
    )
    compare.add_argument(
        "--real", type=Path, required=True, help="folder or archive of real candidate images"
    )
    compare.add_argument(
        "--generated",
        type=Path,
        action="append",
        required=True,
        help="a checkpoint's generated images (repeat it), or one folder whose subfolders are the checkpoints; "
        "names come from the folders, the order from the last number in them (epoch or step)",
    )
    compare.add_argument("--reference", type=Path, default=None, help="real images known NOT to be used")
    compare.add_argument("--labels", type=Path, default=None, help="CSV id,used for some real images")
    compare.add_argument(
        "--out", type=Path, required=True, help="folder for comparison.csv/.html and each checkpoint"
    )
    compare.add_argument(
        "--level",
        type=float,
        default=0.05,
        help="family-wise level of 'evidence of leakage' across the series (Holm)",
    )
    compare.add_argument(
        "--workdir", type=Path, default=None, help="keep the stage artifacts here (resumable)"
    )
    add_config_arguments(compare)
    compare.set_defaults(func=lambda args: cmd_compare(args, config_from_args(args)))


def generated_sources(paths: list[Path]) -> list[Path]:
    """The checkpoints: the given folders/archives, or the subfolders of a single folder of sets."""
    if len(paths) == 1 and paths[0].is_dir():
        subfolders = sorted(p for p in paths[0].iterdir() if p.is_dir() and not p.name.startswith("."))
        if subfolders and not any(p.is_file() for p in paths[0].iterdir() if not p.name.startswith(".")):
            return subfolders
    return paths


def cmd_compare(args: argparse.Namespace, config: AuditConfig) -> int:
    """Run the series, write DIR/comparison.csv, DIR/comparison.html and DIR/<checkpoint>/{results.csv,
    metrics.json}, and print one line per checkpoint."""
    from synthaudit.models.compare import checkpoints_of, run_comparison, summary_sentence
    from synthaudit.models.compare_report import write_comparison_folder
    from synthaudit.models.progress import stage_bars
    from synthaudit.models.results import read_labels_csv

    for path in [args.real, *args.generated, *([args.reference] if args.reference else [])]:
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
    checkpoints = checkpoints_of(generated_sources(list(args.generated)))
    labels = read_labels_csv(args.labels) if args.labels else None
    update, close = stage_bars()
    with tempfile.TemporaryDirectory(prefix="synthaudit-compare-") as tmp:
        try:
            series = run_comparison(
                args.real,
                checkpoints,
                config,
                args.workdir or Path(tmp),
                reference=args.reference,
                labels=labels,
                level=args.level,
                on_progress=update,
            )
        finally:
            close()
    write_comparison_folder(series, args.out)
    for r in series.rows:
        p = "–" if r.holm_p is None else f"{r.holm_p:.2g}"
        print(
            f"{r.name}: {r.verdict}; Holm-adjusted p {p}; flagged {r.n_flagged if r.n_flagged is not None else '–'}"
        )
    print(summary_sentence(series))
    print(
        f"wrote {args.out / 'comparison.csv'}, {args.out / 'comparison.html'} and one folder per checkpoint"
    )
    return 0
