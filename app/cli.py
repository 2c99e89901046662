"""The `synthaudit` command: audit, evaluate, bench, and the service commands (serve, migrate, worker)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthaudit.app.cli_verdict import verdict_line as _verdict_line
from synthaudit.models.config import ALIGNMENT_SETTINGS, DECISION_RULES, NIFTI_AXES, AuditConfig
from synthaudit.models.progress import stage_bars

if TYPE_CHECKING:
    from synthaudit.models.stages import AuditOutcome


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help shows its default, unless there is none to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or action.required:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """The CLI's parser: its subcommands (argparse makes them of the parser's class) all show defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


class CliError(Exception):
    """A user error: printed as one line, exit code 2."""


def _config_from_args(args: argparse.Namespace) -> AuditConfig:
    values = {
        "method": args.method,
        "encoder": args.encoder,
        "metric": args.metric,
        "k": args.k,
        "decision": args.decision,
        "used_fraction": args.used_fraction,
        "threshold": args.threshold,
        "fdr": args.fdr,
        "seed": args.seed,
        "device": args.device,
        "image_size": args.image_size,
        "mae_preset": args.mae_preset,
        "pretrain_images_seen": args.pretrain_images_seen,
        "batch_size": args.batch_size,
        "weights": str(args.weights) if args.weights else None,
        "checkpoint": str(args.checkpoint) if args.checkpoint else None,
        "alignment": args.alignment,
        "nifti_axis": args.nifti_axis,
        "drop_reference_duplicates": bool(getattr(args, "drop_reference_duplicates", False)),
    }
    try:
        return AuditConfig.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise CliError(str(exc)) from exc


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = AuditConfig()
    from synthaudit.models.methods import available_methods, methods_text

    parser.add_argument(
        "--method",
        default=defaults.method,
        choices=available_methods(),
        metavar="METHOD",
        help=f"membership method: {methods_text()}",
    )
    parser.add_argument("--encoder", default=defaults.encoder, help="encoder for --method similarity")
    parser.add_argument(
        "--metric",
        default=defaults.metric,
        choices=["cosine", "euclidean", "manhattan"],
        help="similarity of the nearest-neighbour search",
    )
    parser.add_argument("--k", type=int, default=defaults.k, help="nearest generated images kept as evidence")
    parser.add_argument(
        "--decision",
        default=defaults.decision,
        choices=DECISION_RULES,
        help="how the used column is decided: auto = fdr (flags at --fdr) when images known not to be used "
        "are given (a reference or used=0 labels), else prior (the --used-fraction share)",
    )
    parser.add_argument(
        "--used-fraction",
        type=float,
        default=defaults.used_fraction,
        help="expected share of used images for the unsupervised 'prior' rule",
    )
    parser.add_argument("--threshold", type=float, default=None, help="threshold for --decision fixed")
    parser.add_argument(
        "--fdr",
        type=float,
        default=defaults.fdr,
        help="target false discovery rate of --decision fdr (the default with known-not-used images)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seeds every random choice")
    parser.add_argument("--device", default=defaults.device, help="auto, cpu or cuda")
    parser.add_argument(
        "--image-size",
        type=int,
        default=defaults.image_size,
        help="side (px) the images are resized to first",
    )
    parser.add_argument("--mae-preset", default=defaults.mae_preset, help="MAE size for --method paper")
    parser.add_argument("--pretrain-images-seen", type=int, default=None, help="MAE pretraining budget")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per batch")
    parser.add_argument("--weights", type=Path, default=None, help="local weights file for a timm backbone")
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="a pretrained MAE (.safetensors) to reuse"
    )
    parser.add_argument(
        "--alignment",
        default=defaults.alignment,
        choices=ALIGNMENT_SETTINGS,
        help="auto: the default's thumbnail search tolerates small shifts / rotations / scalings when the "
        "audit's images show such copies, and registers every generated image to its candidate real images; "
        "grid: the tolerant search only; off: neither",
    )
    parser.add_argument(
        "--nifti-axis",
        default=defaults.nifti_axis,
        choices=NIFTI_AXES,
        help="NIfTI volumes (.nii, .nii.gz) become 2D slices along this axis (RAS): axial, coronal, "
        "sagittal, or all three",
    )


def _print_metrics(title: str, metrics_row: dict) -> None:
    from synthaudit.models.metrics import format_metrics_table

    columns = [
        "n",
        "accuracy",
        "precision",
        "recall",
        "specificity",
        "f1",
        "auc",
        "tpr_at_1pct_fpr",
        "tp",
        "fp",
        "tn",
        "fn",
    ]
    print(f"\n{title}")
    print(format_metrics_table([metrics_row], columns))


def cmd_audit(args: argparse.Namespace) -> int:
    """Audit a real set against a generated set and write the CSV."""
    from synthaudit.models.methods import method_label
    from synthaudit.models.reference_overlap import read_overlap
    from synthaudit.models.reference_overlap import warnings as overlap_warnings
    from synthaudit.models.results import read_labels_csv, write_results_csv
    from synthaudit.models.stages import AuditInputs, run_audit
    from synthaudit.models.stages.decode import read_input_notes
    from synthaudit.models.workdir import WorkDir

    for name in ("real", "generated", "reference", "labels"):
        if getattr(args, name) is not None and not getattr(args, name).exists():
            raise CliError(f"--{name} {getattr(args, name)} does not exist")
    config = _config_from_args(args)
    labels = read_labels_csv(args.labels) if args.labels else None
    if config.decision == "fdr" and args.reference is None and 0 not in (labels or {}).values():
        raise CliError(
            "--decision fdr needs images known not to be used: --labels with used=0 rows or --reference"
        )
    update, close = stage_bars()
    with tempfile.TemporaryDirectory(prefix="synthaudit-") as tmp:
        workdir = args.workdir or Path(tmp)
        try:
            inputs = AuditInputs(args.real, args.generated, labels, reference=args.reference)
            outcome = run_audit(inputs, config, workdir, update)
        finally:
            close()
        if args.save_encoder and WorkDir(workdir).mae_checkpoint.exists():
            import shutil

            shutil.copyfile(WorkDir(workdir).mae_checkpoint, args.save_encoder)
        if args.report:
            _write_cli_report(args, workdir, labels)
        overlap = read_overlap(workdir)
        notes = read_input_notes(workdir)
    write_results_csv(outcome.rows, args.out, fmt=args.format)
    m = outcome.metrics
    for role, items in outcome.rejected.items():
        for item in items:
            print(f"skipped {role} file {item['name']}: {item['reason']}", file=sys.stderr)
    for role, names in notes["ignored"].items():
        for name in names:
            print(f"skipped {role} file {name}: not an image file", file=sys.stderr)
    for role, sentence in notes["resized"].items():
        print(f"note: {role}: {sentence}", file=sys.stderr)
    for line in overlap_warnings(overlap or {}):
        print(f"warning: {line}", file=sys.stderr)
    print(
        f"{m['n_real']} real images, {m['n_generated']} generated; method {method_label(config.method, m['method'])}; "
        f"{_decisions_text(m)}"
    )
    print(_verdict_line(m))
    print(f"wrote {args.out}")
    if args.metrics:
        _write_metrics_json(outcome, args.metrics)
        print(f"wrote {args.metrics}")
    if args.report:
        print(f"wrote {args.report}")
    if m.get("labelled"):
        _print_metrics(
            "labelled images, threshold as applied (calibrated on these same labels):",
            m["labelled"]["applied"],
        )
        if "cross_validated" in m["labelled"]:
            _print_metrics(
                f"labelled images, {m['labelled']['cv_folds']}-fold cross-validated threshold (honest estimate):",
                m["labelled"]["cross_validated"],
            )
    return 0


def _decisions_text(m: dict) -> str:
    """What the `used` column holds, in honest words: images flagged at the FDR in a calibrated audit,
    else a rule's marks (a setting, not a finding: an unmarked image was not shown to be unused)."""
    used, threshold, rule = m["n_decided_used"], m["threshold"], m["decision_rule"]
    if m.get("calibrated") and rule == "fdr":
        return f"{used} flagged at FDR {m['fdr']:g} (threshold {threshold:.4f}, rule fdr)"
    return (
        f"{used} marked used by the rule (threshold {threshold:.4f}, rule {rule}; a setting, not a finding)"
    )


def _write_metrics_json(outcome: AuditOutcome, path: Path) -> None:
    """The same JSON as GET /v1/audits/{id}/metrics (with audit_id null: no service holds this audit)."""
    import json

    from synthaudit.models.summary import metrics_document

    document = {"audit_id": None, **metrics_document(outcome.metrics, outcome.rejected)}
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def _write_cli_report(args: argparse.Namespace, workdir: Path, labels: dict[str, int] | None) -> None:
    """The HTML report of the audit just run (patients grouped from DICOM tags when there are any)."""
    import os

    from synthaudit.models.groups import read_groups
    from synthaudit.models.report import write_report

    secret = os.environ.get("GROUP_KEY_SECRET", "")
    groups = read_groups(args.real, secret=secret) or None
    reference_groups = read_groups(args.reference, secret=secret) or None if args.reference else None
    write_report(
        workdir,
        args.report,
        labels=labels,
        groups=groups,
        reference_groups=reference_groups,
        subtitle=f"real: {args.real}, generated: {args.generated}",
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """Write the demo set and say how to audit it."""
    from synthaudit.models.demo import write_demo

    counts = write_demo(args.out)
    print(", ".join(f"{n} {name}" for name, n in counts.items()) + f" images in {args.out}/; now run:")
    print(
        f"synthaudit audit --real {args.out}/real --generated {args.out}/generated --reference {args.out}/holdout "
        f"--out {args.out}/results.csv --report {args.out}/report.html"
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score a results CSV against labels."""
    import numpy as np

    from synthaudit.models.metrics import classification_metrics
    from synthaudit.models.results import read_labels_csv, read_results_csv

    rows = read_results_csv(args.pred)
    labels = read_labels_csv(args.labels)
    references = sum(r.role == "reference" for r in rows)
    known = [r for r in rows if r.id in labels and r.role != "reference"]  # references were never decided
    if not known:
        raise CliError("no id of the predictions is in the labels file")
    y = np.array([labels[r.id] for r in known])
    pred = np.array([r.used for r in known])
    scores = np.array([r.score for r in known])
    result = classification_metrics(y, pred, None if np.isnan(scores).any() else scores)
    missing = len(labels) - len(known)
    missing -= sum(r.role == "reference" and r.id in labels for r in rows)
    notes = [f"{missing} labels without prediction"] if missing else []
    notes += [f"{references} reference rows left out"] if references else []
    _print_metrics(
        f"{len(known)} labelled images scored" + (f" ({'; '.join(notes)})" if notes else ""), result
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run methods over benchmark folders (or null pairings) and print the comparison tables."""
    from synthaudit.models.bench import format_bench, run_bench, run_null_bench

    config = _config_from_args(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    from tqdm import tqdm

    bar = tqdm(
        total=len(args.folders) * len(methods) * 100,
        unit="%",
        desc="bench",
        bar_format="{desc} {bar} {percentage:3.0f}% {elapsed} {postfix}",
    )
    from synthaudit.models.stages import overall_progress

    state: dict[str, Any] = {"done": 0, "key": None, "last": 0.0}

    def progress(folder: str, method: str, stage: str, fraction: float) -> None:
        key = (folder, method)
        if state["key"] != key:
            if state["key"] is not None:
                state["done"] += 100
            state["key"], state["last"] = key, 0.0
        bar.set_postfix_str(f"{folder} {method} {stage}", refresh=False)
        value = state["done"] + overall_progress(stage, fraction)
        if value > bar.n:
            bar.update(value - bar.n)

    options = {"reference_share": args.reference_share, "redraws": args.redraws}
    try:
        if args.null_real:
            rows = run_null_bench(
                args.null_real, args.folders, methods, config, args.workdir, progress, **options
            )
        else:
            rows = run_bench(args.folders, methods, config, args.workdir, progress, **options)
    finally:
        bar.close()
    print()
    print(format_bench(rows, config.fdr, null=bool(args.null_real), **options))
    if args.output:
        import json

        args.output.write_text(json.dumps(rows, indent=2, default=float))
    return 0


def cmd_perf(args: argparse.Namespace) -> int:
    """Benchmark the stages' speed (models/perf.py; docs/performance.md)."""
    from synthaudit.models.perf import main as perf_main

    return perf_main(args.perf_args, prog="synthaudit perf")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = _Parser(prog="synthaudit", description="Audit synthetic images for training-data leakage.")
    from synthaudit import __version__

    parser.add_argument("--version", action="version", version=f"synthaudit {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True
    )  # commands are _Parser too (argparse's default)

    audit = sub.add_parser("audit", help="audit real images against generated ones and write a CSV")
    audit.add_argument("--real", type=Path, required=True, help="folder or archive of real candidate images")
    audit.add_argument("--generated", type=Path, required=True, help="folder or archive of generated images")
    audit.add_argument("--out", type=Path, default=Path("results.csv"), help="the results CSV")
    audit.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="CSV id,used for some real images: used=0 rows are the reference of a calibrated verdict",
    )
    audit.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="folder or archive of real images known NOT to be in the training set (a hold-out)",
    )
    audit.add_argument(
        "--metrics", type=Path, default=None, help="also write the metrics JSON (as the API's)"
    )
    audit.add_argument(
        "--format",
        choices=["synthaudit", "imageclef"],
        default="synthaudit",
        help="synthaudit: every column; imageclef: id,label lines with no header",
    )
    audit.add_argument("--workdir", type=Path, default=None, help="keep the stage artifacts here (resumable)")
    audit.add_argument(
        "--save-encoder", type=Path, default=None, help="keep the pretrained MAE (.safetensors)"
    )
    audit.add_argument("--report", type=Path, default=None, help="also write an HTML report (plots, gallery)")
    audit.add_argument(
        "--drop-reference-duplicates",
        action="store_true",
        help="drop real candidates that repeat --reference images (same or near-identical pixels) instead "
        "of refusing the audit; they are counted in the metrics",
    )
    _add_config_arguments(audit)
    audit.set_defaults(func=cmd_audit)

    evaluate = sub.add_parser("evaluate", help="score a results CSV against labels")
    evaluate.add_argument("--pred", type=Path, required=True)
    evaluate.add_argument("--labels", type=Path, required=True)
    evaluate.set_defaults(func=cmd_evaluate)

    bench = sub.add_parser("bench", help="compare methods on folders with real/, generated/, labels.csv")
    bench.add_argument("folders", type=Path, nargs="+", help="folders with real/, generated/ and labels.csv")
    bench.add_argument("--methods", default="pixels,paper,default", help="comma-separated method names")
    bench.add_argument("--workdir", type=Path, default=None, help="keep the stage artifacts here (resumable)")
    bench.add_argument("--output", type=Path, default=None, help="also write the rows as JSON")
    bench.add_argument(
        "--null-real",
        type=Path,
        default=None,
        metavar="DIR",
        help="null pairings: audit DIR (real images no generator saw; DIR or DIR/real) against "
        "each FOLDER's generated/ images; nothing may be flagged",
    )
    bench.add_argument(
        "--reference-share",
        type=float,
        default=0.4,
        help="share of the not-used images drawn (seeded by --seed) as the calibrated reference",
    )
    bench.add_argument(
        "--redraws",
        type=int,
        default=200,
        help="further seeded reference draws over the same scores (mean FDP/TPR, null detect rate)",
    )
    _add_config_arguments(bench)
    bench.set_defaults(func=cmd_bench)

    demo = sub.add_parser("demo", help="write a tiny demo set (real, generated, holdout) to try an audit on")
    demo.add_argument("out", type=Path, nargs="?", default=Path("demo"), help="the folder to write")
    demo.set_defaults(func=cmd_demo)

    perf = sub.add_parser(  # options parsed by models/perf.py (imports torch only when it runs)
        "perf",
        add_help=False,
        help="stage throughput on a synthetic workload vs a measured ceiling (GPU or CPU)",
    )
    perf.add_argument("perf_args", nargs=argparse.REMAINDER)
    perf.set_defaults(func=cmd_perf)

    from synthaudit.app.cli_compare import add_compare_command
    from synthaudit.app.cli_workflow import add_workflow_commands

    add_compare_command(sub, _add_config_arguments, _config_from_args)
    add_workflow_commands(sub)
    try:
        from synthaudit.app.cli_service import add_service_commands
    except ImportError:  # the service layer is optional for the engine's commands
        pass
    else:
        add_service_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `synthaudit` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["perf"]:  # options of its own (models/perf.py), so `perf --help` shows them
        return cmd_perf(argparse.Namespace(perf_args=argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"synthaudit: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"synthaudit: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("synthaudit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
