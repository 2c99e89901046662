"""Workflow subcommands of `synthaudit`: pretrain (a reusable encoder) and remote (a service client)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from synthaudit.app.cli_verdict import verdict_line
from synthaudit.models.config import AuditConfig


def add_workflow_commands(subparsers: Any) -> None:
    """Register `pretrain` and `remote` on the CLI's subparsers."""
    defaults = AuditConfig()
    pretrain = subparsers.add_parser(
        "pretrain", help="pretrain a reusable MAE encoder on image folders/archives (.safetensors)"
    )
    pretrain.add_argument(
        "--images",
        type=Path,
        nargs="+",
        required=True,
        help="folders or archives, in order (an audit pretrains on: real, then generated)",
    )
    pretrain.add_argument("--out", type=Path, required=True, help="the encoder file (.safetensors)")
    pretrain.add_argument("--image-size", type=int, default=defaults.image_size)
    pretrain.add_argument("--mae-preset", default=defaults.mae_preset)
    pretrain.add_argument(
        "--pretrain-images-seen", type=int, default=None, help="budget (default: by set size)"
    )
    pretrain.add_argument("--seed", type=int, default=defaults.seed)
    pretrain.add_argument("--device", default=defaults.device, help="auto, cpu or cuda")
    pretrain.set_defaults(func=cmd_pretrain)

    remote = subparsers.add_parser(
        "remote", help="use a synthaudit service: submit, status, list, results, report"
    )
    remote.add_argument(
        "--url", default=None, help="the service (default: SYNTHAUDIT_URL or http://127.0.0.1:8000)"
    )
    remote.add_argument("--api-key", default=None, help="default: SYNTHAUDIT_API_KEY")
    actions = remote.add_subparsers(dest="action", required=True)
    submit = actions.add_parser("submit", help="upload the sets and start an audit")
    submit.add_argument("--real", type=Path, nargs="+", required=True, help="files, folders or archives")
    submit.add_argument("--generated", type=Path, nargs="+", required=True)
    submit.add_argument("--labels", type=Path, default=None, help="CSV id,used for some real images")
    submit.add_argument(
        "--reference",
        type=Path,
        nargs="+",
        default=None,
        help="files, folders or archives of real images known NOT to be in the training set",
    )
    submit.add_argument("--fdr", type=float, default=None, help="target false discovery rate (default 0.1)")
    submit.add_argument("--method", default=None)
    submit.add_argument("--image-size", type=int, default=None)
    submit.add_argument("--seed", type=int, default=None)
    submit.add_argument("--config", default=None, help="more settings as JSON, e.g. '{\"k\": 10}'")
    submit.add_argument("--encoder-id", default=None, help="reuse a registered encoder")
    submit.add_argument(
        "--webhook-url", default=None, help="POSTed when the audit ends; its signing secret is printed once"
    )
    submit.add_argument("--wait", action="store_true", help="wait for the end (then --out/--report)")
    submit.add_argument("--out", type=Path, default=None, help="with --wait: write results.csv here")
    submit.add_argument("--report", type=Path, default=None, help="with --wait: write the HTML report here")
    status = actions.add_parser("status", help="where an audit stands")
    status.add_argument("audit_id")
    status.add_argument("--wait", action="store_true")
    results = actions.add_parser("results", help="download results.csv")
    results.add_argument("audit_id")
    results.add_argument("--out", type=Path, default=Path("results.csv"))
    results.add_argument("--format", choices=["synthaudit", "imageclef"], default="synthaudit")
    report = actions.add_parser("report", help="download the HTML report")
    report.add_argument("audit_id")
    report.add_argument("--out", type=Path, default=Path("report.html"))
    _add_list_command(actions)
    remote.set_defaults(func=cmd_remote)


def _add_list_command(actions: Any) -> None:
    """`remote list`: this key's audits, newest first."""
    listing = actions.add_parser("list", help="your audits, newest first (find a lost audit id)")
    listing.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    listing.add_argument("--since", default=None, help="created at or after this time (ISO 8601, UTC)")
    listing.add_argument("--until", default=None, help="created before this time (ISO 8601, UTC)")
    listing.add_argument("--limit", type=int, default=50, help="audits per page, 1-200")
    listing.add_argument("--cursor", default=None, help="continue where a previous page ended")
    listing.add_argument("--all", action="store_true", help="every page, not just the first")


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Pretrain once; reuse with `synthaudit audit --checkpoint FILE` (or register it via the API)."""
    from tqdm import tqdm

    from synthaudit.models.pretrained import EncoderSpec, pretrain_encoder

    for source in args.images:
        if not source.exists():
            print(f"synthaudit: --images {source} does not exist", file=sys.stderr)
            return 2
    if not args.out.name.endswith(".safetensors"):
        print("synthaudit: --out must end with .safetensors", file=sys.stderr)
        return 2
    spec = EncoderSpec(
        image_size=args.image_size,
        mae_preset=args.mae_preset,
        pretrain_images_seen=args.pretrain_images_seen,
        seed=args.seed,
        device=args.device,
    )
    bar = tqdm(total=100, desc="pretrain", unit="%", bar_format="{desc} {bar} {percentage:3.0f}% {elapsed}")

    def progress(fraction: float) -> None:
        target = int(100 * min(max(fraction, 0.0), 1.0))
        if target > bar.n:
            bar.update(target - bar.n)

    try:
        info = pretrain_encoder(args.images, args.out, spec, on_progress=progress)
    finally:
        bar.close()
    loss = "n/a" if info.final_loss is None else f"{info.final_loss:.4f}"
    print(
        f"pretrained on {info.n_images} images ({info.steps} steps, final loss {loss}); "
        f"training data sha256 {info.data_hash}"
    )
    print(f"wrote {info.path}")
    return 0


def cmd_remote(args: argparse.Namespace) -> int:
    """The service through app/client.py."""
    import json

    from synthaudit.app.client import ApiError, Client

    api = Client(args.url, args.api_key)
    try:
        if args.action == "submit":
            return _submit(api, args)
        if args.action == "status":
            audit = api.wait(args.audit_id) if args.wait else api.audit(args.audit_id)
            print(json.dumps(audit, indent=2))
            return 0 if audit["status"] != "failed" else 1
        if args.action == "list":
            return _list(api, args)
        if args.action == "results":
            _write(args.out, api.results_csv(args.audit_id, args.format))
        else:
            _write(args.out, api.report(args.audit_id))
        return 0
    except ApiError as exc:
        print(f"synthaudit: {exc}", file=sys.stderr)
        return 1


def _list(api: Any, args: argparse.Namespace) -> int:
    """One line per audit (id, status, stage and progress, created); the next page's cursor on stderr."""
    cursor = args.cursor
    while True:
        page = api.list_audits(
            args.status, created_after=args.since, created_before=args.until, limit=args.limit, cursor=cursor
        )
        for audit in page["items"]:
            stage = f"{audit.get('stage') or '-'} {audit.get('progress', 0):.0f}%"
            print(f"{audit['id']}  {audit['status']:<9}  {stage:<14}  {audit['created_at']}")
        cursor = page.get("next_cursor")
        if not cursor:
            return 0
        if not args.all:
            print(f"more: {_next_page_command(args, cursor)}", file=sys.stderr)
            return 0


def _next_page_command(args: argparse.Namespace, cursor: str) -> str:
    """The command for the next page: the same service (--url) and filters, with the cursor."""
    import shlex

    words = ["synthaudit", "remote"]
    if args.url:
        words += ["--url", args.url]
    words.append("list")
    for option, value in (("--status", args.status), ("--since", args.since), ("--until", args.until)):
        if value:
            words += [option, value]
    if args.limit != 50:
        words += ["--limit", str(args.limit)]
    return shlex.join([*words, "--cursor", cursor])


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    print(f"wrote {path}")


def _submit(api: Any, args: argparse.Namespace) -> int:
    import json

    from synthaudit.models.results import read_labels_csv

    config = json.loads(args.config) if args.config else {}
    for key in ("method", "image_size", "seed", "fdr"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    labels = read_labels_csv(args.labels) if args.labels else None
    real = api.upload_dataset("real", args.real)
    generated = api.upload_dataset("generated", args.generated)
    print(
        f"uploaded real {real['id']} ({real['image_count']} images), "
        f"generated {generated['id']} ({generated['image_count']} images)"
    )
    reference = api.upload_dataset("reference", args.reference) if args.reference else None
    if reference is not None:
        print(f"uploaded reference {reference['id']} ({reference['image_count']} images)")
    audit = api.create_audit(
        real["id"],
        generated["id"],
        config=config,
        labels=labels,
        encoder_id=args.encoder_id,
        webhook_url=args.webhook_url,
        reference_dataset_id=reference["id"] if reference is not None else None,
    )
    print(f"audit {audit['id']} {audit['status']}")
    if audit.get("webhook_secret"):  # shown by the service this once: the receiver verifies with it
        print(f"webhook secret (shown once): {audit['webhook_secret']}")
    if not args.wait:
        return 0
    audit = api.wait(audit["id"])
    print(f"audit {audit['id']} {audit['status']}" + (f": {audit['error']}" if audit.get("error") else ""))
    if audit["status"] != "succeeded":
        return 1
    print(verdict_line(api.metrics(audit["id"])))
    if args.out:
        _write(args.out, api.results_csv(audit["id"]))
    if args.report:
        _write(args.report, api.report(audit["id"]))
    return 0
