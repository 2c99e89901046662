"""The metrics document of a finished audit: what `synthaudit audit --metrics` writes and what
`GET /v1/audits/{id}/metrics` returns (plus its `audit_id`), built from the decide stage's summary."""

from __future__ import annotations

import math
from typing import Any


def finite(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, recursively (JSONB rejects NaN; both outputs agree on null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def audit_counts(summary: dict[str, Any], rejected: dict[str, list[Any]]) -> dict[str, int | None]:
    """How many images of each kind the audit saw, decided and skipped.

    `used` / `not_used` are the decisions of the `used` column (kept for compatibility): a decision
    rule's output, not findings; an image that is not flagged was not shown to be unused. `flagged` /
    `not_flagged` are the honest counts of a calibrated audit: candidates Benjamini-Hochberg flags at
    the FDR, and candidates tested but not flagged; both null when no image was tested (uncalibrated,
    or inconclusive because the reference check failed)."""
    counts = {
        "real": int(summary.get("n_real", 0)),
        "generated": int(summary.get("n_generated", 0)),
        "used": int(summary.get("n_decided_used", 0)),
        "labelled": int(summary.get("n_labelled", 0)),
        "candidates": int(summary.get("n_candidates", summary.get("n_real", 0))),
        "reference": int(summary.get("n_reference", 0)),
        "rejected_real": len(rejected.get("real", [])),
        "rejected_generated": len(rejected.get("generated", [])),
        "rejected_reference": len(rejected.get("reference", [])),
    }
    counts["not_used"] = counts["real"] - counts["used"]
    flagged = _flagged(summary)
    out: dict[str, int | None] = dict(counts)
    out["flagged"] = flagged
    out["not_flagged"] = None if flagged is None else counts["candidates"] - flagged
    return out


def _flagged(summary: dict[str, Any]) -> int | None:
    """Candidates flagged at the FDR in a calibrated audit; None when no image was tested."""
    leak = summary.get("leakage") or {}
    if (
        not summary.get("calibrated")
        or leak.get("verdict") == "inconclusive"
        or leak.get("n_flagged") is None
    ):
        return None
    return int(leak["n_flagged"])


def metrics_document(summary: dict[str, Any], rejected: dict[str, list[Any]]) -> dict[str, Any]:
    """The public metrics of an audit (every key always present; null where it does not apply)."""
    labelled = summary.get("labelled") or {}
    return finite(
        {
            "method": summary.get("method"),
            "decision_rule": str(summary.get("decision_rule", "")),
            "threshold": float(summary["threshold"]),
            "calibrated": bool(summary.get("calibrated", False)),
            "fdr": summary.get("fdr"),
            "counts": audit_counts(summary, rejected),
            "reference_check": summary.get("reference_check"),
            "leakage": summary.get("leakage"),
            "reference_overlap": summary.get("reference_overlap"),
            "power": summary.get("power"),
            "registered_copies": summary.get("registered_copies"),
            "metrics": labelled.get("applied"),
            "cross_validated": labelled.get("cross_validated"),
            "rejected": {k: [dict(r) for r in v] for k, v in sorted(rejected.items())},
        }
    )
