"""The CLI's summary line for every kind of verdict, the HTTP metrics model of the same document, and the
patient service on an inconclusive audit."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from synthaudit.app.cli import _verdict_line

CHECK_FAILED = {
    "test": "cross-fitted classifier AUC (clustered)",
    "statistic": 0.93,
    "p_value": 1.2e-08,
    "level": 0.01,
    "passed": False,
    "units": 400,
    "classifier_p_value": 1.2e-08,
    "pairs": 3,
    "paired_statistic": None,
    "paired_p_value": None,
    "grouping": "near-duplicates",
    "n_reference": 300,
    "n_candidates": 600,
    "features": "acquisition statistics",
    "corrected": False,
    "effective_reference_size": None,
    "message": "The reference images differ from the candidates.",
}
CHECK_PASSED = {
    **CHECK_FAILED,
    "statistic": 0.51,
    "p_value": 0.41,
    "classifier_p_value": 0.41,
    "passed": True,
}


def leakage(**changes: Any) -> dict[str, Any]:
    base = {
        "p_value": 1e-41,
        "detected": True,
        "verdict": "detected",
        "level": 0.05,
        "test": "mann-whitney-normal",
        "statistic": 0.9,
        "n_candidates": 800,
        "n_reference": 300,
        "n_flagged": 457,
        "fdr": 0.1,
        "confidence": 0.95,
        "used_count_lower_bound": 412,
        "used_share_estimate": 0.55,
        "used_share_ci": [0.51, 1.0],
        "min_p_value": 1 / 301,
        "min_reference_size": 9,
        "reference_too_small": False,
        "reason": None,
    }
    return {**base, **changes}


def summary(leak: dict[str, Any] | None, check: dict[str, Any] | None) -> dict[str, Any]:
    calibrated = leak is not None and leak["verdict"] != "inconclusive"
    return {
        "method": "pixels",
        "decision_rule": "fdr" if calibrated else "prior",
        "threshold": 0.5,
        "calibrated": calibrated,
        "fdr": 0.1 if leak is not None else None,
        "reference_check": check,
        "n_real": 800,
        "n_candidates": 800,
        "n_reference": 300,
        "n_generated": 1000,
        "n_decided_used": 457 if calibrated else 400,
        "n_labelled": 0,
        "labelled": None,
        "leakage": leak,
        "power": None,
    }


INCONCLUSIVE = leakage(
    verdict="inconclusive",
    detected=None,
    reason="reference_check_failed",
    p_value=None,
    statistic=None,
    n_flagged=None,
    used_count_lower_bound=None,
    used_share_estimate=None,
    used_share_ci=None,
)


def test_inconclusive_line_says_why_and_claims_nothing() -> None:
    line = _verdict_line(summary(INCONCLUSIVE, CHECK_FAILED))
    assert line == (
        "inconclusive: the reference images differ from the candidates (reference check p = 1.2e-08, AUC 0.93), "
        "without looking at the generated images; their scores cannot say whether the generator leaks. Use "
        "images set aside at random before training."
    )
    assert "evidence" not in line and "flagged" not in line and "at least" not in line


def test_detected_line_names_the_passed_check() -> None:
    line = _verdict_line(summary(leakage(), CHECK_PASSED))
    assert line.startswith(
        "evidence of training-data leakage (p = 1e-41, mann-whitney-normal, 300 reference images)"
    )
    assert "at FDR 0.1: 457 of 800 candidates flagged" in line
    assert "at least 412 used (95% confidence)" in line
    assert line.endswith("reference check passed (p = 0.41)")


def test_a_zero_lower_bound_is_no_bound_above_zero() -> None:
    leak = leakage(detected=False, verdict="not_detected", p_value=0.3, n_flagged=0, used_count_lower_bound=0)
    line = _verdict_line(summary(leak, CHECK_PASSED))
    assert line.startswith("no evidence of training-data leakage (p = 0.3,")
    assert "no lower bound above zero can be given" in line and "at least 0" not in line


def test_a_reference_too_small_names_the_size_needed() -> None:
    leak = leakage(
        detected=False,
        verdict="not_detected",
        p_value=0.2,
        n_reference=3,
        n_candidates=100,
        n_flagged=0,
        used_count_lower_bound=0,
        reference_too_small=True,
        min_reference_size=9,
    )
    not_made = {**CHECK_PASSED, "passed": None, "p_value": None, "classifier_p_value": None, "units": 5}
    line = _verdict_line(summary(leak, not_made))
    assert "with 3 reference images nothing can be flagged at FDR 0.1 (at least 9 are needed)" in line
    assert "0 of 100" not in line and "at least 0" not in line
    assert (
        "reference check not made (5 independent units and 3 near-duplicate pairs across the reference"
        in line
    )


def test_uncalibrated_line_is_unchanged() -> None:
    assert _verdict_line(summary(None, None)).startswith("uncalibrated: the scores rank the images")


def test_the_http_model_keeps_the_cli_document_as_it_is() -> None:
    """GET /v1/audits/{id}/metrics is MetricsOut(audit_id, **metrics_document(...)): nothing dropped."""
    from synthaudit.app.schemas import MetricsOut
    from synthaudit.models.summary import metrics_document

    for leak, check in ((INCONCLUSIVE, CHECK_FAILED), (leakage(), CHECK_PASSED), (None, None)):
        s = summary(leak, check)
        s["reference_overlap"] = {"n_pairs": 0} if leak else None
        document = json.loads(json.dumps(metrics_document(s, {})))
        served = MetricsOut(audit_id=uuid.uuid4(), **document).model_dump(mode="json")
        assert served.pop("audit_id")
        assert served == document


def test_the_openapi_document_describes_the_new_keys(tmp_path: Path) -> None:
    from synthaudit.app.core.config import Settings
    from synthaudit.app.main import create_app

    schema = create_app(Settings(synthaudit_home=tmp_path)).openapi()
    props = schema["components"]["schemas"]["MetricsOut"]["properties"]
    for key in ("reference_check", "reference_overlap", "leakage", "counts"):
        assert props[key].get("description"), key
    assert "inconclusive" in props["leakage"]["description"]
    json.dumps(schema)


def test_patients_of_an_inconclusive_audit_are_not_calibrated() -> None:
    from synthaudit.app.services.patients import ScoredImages, audit_patients, patients_calibrated

    ids = [f"c{i}" for i in range(6)] + [f"\0reference/r{i}" for i in range(30)]
    images = ScoredImages(
        ids=ids,
        scores=[0.9, 0.8, 0.7, 0.2, 0.1, 0.05] + [0.01 * i for i in range(30)],
        used=[1, 1, 1, 0, 0, 0] + [0] * 30,
        roles=["candidate"] * 6 + ["reference"] * 30,
        groups={i: {"patient": f"P-{i}"} for i in ids},
    )
    calibrated = summary(leakage(), CHECK_PASSED)
    assert patients_calibrated(calibrated)
    assert any(p.p_value is not None for p in audit_patients(images, "any", calibrated, 0.5))
    inconclusive = {
        **summary(INCONCLUSIVE, CHECK_FAILED),
        "calibrated": True,
    }  # verdict decides, not the flag
    assert not patients_calibrated(inconclusive)
    patients = audit_patients(images, "any", inconclusive, 0.5)
    assert patients and all(p.p_value is None and p.q_value is None for p in patients)


def test_counts_are_grammatical() -> None:
    from synthaudit.app.cli_verdict import _count

    assert (
        _count(1, "reference image") == "1 reference image"
        and _count(2, "reference image") == "2 reference images"
    )
