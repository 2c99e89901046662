"""The verdict of every calibrated audit, as the report, the metrics document and patients state it:
detected, not detected, a reference too small to flag anything, no lower bound above zero, and
inconclusive (the reference check failed: the reference images differ from the candidates)."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from synthetic_sets import make_membership_set, random_image, slice_stack

from synthaudit.models.config import AuditConfig
from synthaudit.models.report import render_report
from synthaudit.models.stages import AuditInputs, run_audit
from synthaudit.models.summary import metrics_document

CONFIG = AuditConfig(method="pixels", image_size=32)
HOSTILE = "x'><img src=x onerror=alert(1)>"


def plain_sentence(page: str) -> str:
    match = re.search(r"<span class=plain id=verdict-plain>(.*?)</span>", page, re.S)
    assert match, "the verdict has no plain sentence"
    return " ".join(match.group(1).split())


def leakage_sentence(page: str) -> str:
    match = re.search(r"<span class=lead id=leakage-sentence>(.*?)</span>", page)
    assert match, "the verdict has no statistics sentence"
    return match.group(1)


def verdict_text(page: str) -> str:
    match = re.search(r"<p id=verdict .*?</p>", page, re.S)
    assert match
    return " ".join(re.sub(r"<[^>]+>", "", match.group(0)).split())


def reference_audit(
    root: Path, n_reference: int, *, shifted: bool = False, seed: int = 11, n_used: int = 10
) -> Path:
    """n_used used + 10 not-used candidates; a reference of n_reference fresh images (darkened and contrast
    changed when shifted: another scanner); hostile file names among the real and reference images."""
    make_membership_set(root, n_used=n_used, n_unused=10, n_fresh_generated=20, seed=seed, exact_copies=True)
    reference = root / "reference"
    reference.mkdir()
    rng = np.random.default_rng(seed + 100)
    for j in range(n_reference):
        img = random_image(rng, 32).astype(np.float64)
        if shifted:
            img = 255.0 * (img / 255.0) ** 1.8 * 0.6
        name = f"{HOSTILE}{j}" if j == 0 else f"ref_{j:02d}"
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(reference / f"{name}.png")
    first = min((root / "real").glob("r*.png"))
    first.rename(root / "real" / f"{HOSTILE}.png")
    work = root / "work"
    run_audit(AuditInputs(root / "real", root / "generated", reference=reference), CONFIG, work)
    return work


@pytest.fixture(scope="module")
def shifted_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reference from 'another scanner': the reference check fails, the verdict is inconclusive."""
    return reference_audit(tmp_path_factory.mktemp("shifted"), 30, shifted=True)


@pytest.fixture(scope="module")
def random_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reference drawn like the candidates: the check passes, exact copies are detected."""
    return reference_audit(tmp_path_factory.mktemp("random"), 60, n_used=30)


@pytest.fixture(scope="module")
def small_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 reference images: 1/4 > FDR 0.1, nothing can be flagged whatever the scores."""
    return reference_audit(tmp_path_factory.mktemp("small"), 3)


def metrics_of(work: Path) -> dict[str, Any]:
    return json.loads((work / "metrics.json").read_text())


def with_metrics(work: Path, tmp_path: Path, edit: dict[str, Any], leak_edit: dict[str, Any]) -> Path:
    """A copy of a real work folder whose metrics.json is edited by hand (the decide stage's contract)."""
    copy = tmp_path / "work"
    shutil.copytree(work, copy)
    m = metrics_of(copy)
    m.update(edit)
    m["leakage"] = {**m["leakage"], **leak_edit}
    (copy / "metrics.json").write_text(json.dumps(m))
    return copy


# --- the report's lead ------------------------------------------------------------------------------


def test_inconclusive_report_leads_with_why_and_states_no_finding(shifted_work: Path) -> None:
    m = metrics_of(shifted_work)
    check, leak = m["reference_check"], m["leakage"]
    assert check["passed"] is False and leak["verdict"] == "inconclusive" and m["calibrated"] is False
    page = render_report(shifted_work, gallery_rows=100)
    plain = plain_sentence(page)
    assert plain.startswith("The reference images differ from the candidates (p = ")
    assert "found without looking at the generated images" in plain
    assert "their scores cannot say whether the generator leaks" in plain
    assert "Use images set aside at random before training" in plain
    text = verdict_text(page)
    assert "evidence of" not in text.lower()  # neither "evidence of" nor "no evidence of"
    assert "flagged:" not in text and "are flagged" not in text and "at least" not in text
    assert f"AUC {check['statistic']:.2f}" in text
    assert "class='verdict inconclusive'" in page and "verdict risk" not in page
    assert "id=leakage-sentence" not in page
    # no p-value is offered as calibrated: no p-value plot, no p or q in the gallery, no flag counts
    assert "id=p-value-histogram" not in page and "candidate images flagged" not in page
    assert not re.search(r"p [0-9–].* · q ", page)
    assert "no image has a p-value" in page


def test_inconclusive_report_shows_the_check_evidence(shifted_work: Path) -> None:
    page = render_report(shifted_work)
    assert "<h2>Reference check</h2>" in page and "id=reference-check-histogram" in page
    examples = re.search(r"<div id=check-examples>(.*?)</div>\n</div>", page, re.S)
    assert examples
    assert examples.group(1).count("alt='reference image") == 6
    assert examples.group(1).count("alt='candidate image") == 6
    assert HOSTILE not in page  # names escaped (reference-set images are not named at all)


def test_inconclusive_without_blind_scores_has_no_evidence_panel(shifted_work: Path, tmp_path: Path) -> None:
    copy = tmp_path / "work"
    shutil.copytree(shifted_work, copy)
    (copy / "reference_check.npz").unlink()
    page = render_report(copy)
    assert plain_sentence(page).startswith("The reference images differ from the candidates")
    assert "id=reference-check-histogram" not in page and "<h2>Reference check</h2>" not in page


def test_detected_report_leads_with_a_plain_sentence_then_the_statistics(random_work: Path) -> None:
    m = metrics_of(random_work)
    leak, check = m["leakage"], m["reference_check"]
    assert check["passed"] is True and leak["verdict"] == "detected" and leak["used_count_lower_bound"] > 0
    page = render_report(random_work)
    assert plain_sentence(page) == (
        "The generated images give away information about the real images the generator was trained on."
    )
    assert page.index("id=verdict-plain") < page.index("id=leakage-sentence")
    lead = leakage_sentence(page)
    assert lead.startswith("Evidence of training-data leakage: p = ")
    assert f"at least {leak['used_count_lower_bound']} were used (95 % confidence)." in lead
    assert "class='verdict risk'" in page
    assert "The reference check passed" in verdict_text(page)
    assert "id=reference-check-histogram" not in page


def test_not_detected_report_says_it_is_not_proof(random_work: Path, tmp_path: Path) -> None:
    work = with_metrics(
        random_work,
        tmp_path,
        {},
        {
            "verdict": "not_detected",
            "detected": False,
            "p_value": 0.41,
            "n_flagged": 0,
            "used_count_lower_bound": 0,
        },
    )
    page = render_report(work)
    assert plain_sentence(page) == (
        "This audit found no sign that the generated images give away their training images; that is not "
        "proof that they are safe to share."
    )
    lead = leakage_sentence(page)
    assert lead.startswith("No evidence of training-data leakage was found at level 0.05 (p = 0.41)")
    assert lead.endswith("no lower bound above zero can be given on how many were used.")
    assert "at least 0" not in page and "verdict risk" not in page
    assert "none above zero can be given" in page  # the summary table's bound row


def test_a_reference_too_small_says_so_with_the_size_needed(small_work: Path) -> None:
    leak = metrics_of(small_work)["leakage"]
    assert leak["reference_too_small"] is True and leak["min_reference_size"] == 9 and leak["n_flagged"] == 0
    page = render_report(small_work)
    plain = plain_sentence(page)
    assert (
        "With 3 reference images nothing can be flagged at a false discovery rate of 10 % (at least 9 are needed)."
        in plain
    )
    assert "at least 0" not in page
    assert (
        "<tr><th>reference images needed to flag anything</th><td>at least 9 (there are 3)</td></tr>" in page
    )


def test_inconclusive_patients_get_no_p_values(shifted_work: Path) -> None:
    from synthaudit.models.report_data import load_report_data, patient_results

    data = load_report_data(shifted_work)
    groups = {image_id: {"patient": f"P{n // 2}"} for n, image_id in enumerate(data["real_ids"])}
    patients = patient_results(data, groups, None, "any")
    assert patients and all(p.p_value is None and p.q_value is None for p in patients)
    page = render_report(shifted_work, groups=groups)
    assert "The reference check failed, so patients get no p-value" in page
    assert "candidate patients are flagged" not in page and "<th>p-value</th>" not in page


# --- the metrics document ---------------------------------------------------------------------------


def test_metrics_document_keys_of_every_kind_of_audit(shifted_work: Path, random_work: Path) -> None:
    keys = {"reference_check", "leakage", "reference_overlap", "calibrated", "counts", "fdr", "power"}
    inconclusive = metrics_document(metrics_of(shifted_work), {})
    assert set(inconclusive) >= keys
    overlap = inconclusive["reference_overlap"]  # overlap.json of the decode stage, carried by decide
    assert overlap["duplicates_reference_candidates"] == 0 and overlap["dropped_candidates"] == 0
    assert inconclusive["calibrated"] is False and inconclusive["reference_check"]["passed"] is False
    assert (
        inconclusive["leakage"]["verdict"] == "inconclusive" and inconclusive["leakage"]["detected"] is None
    )
    counts = inconclusive["counts"]
    assert counts["flagged"] is None and counts["not_flagged"] is None  # nothing was tested
    assert counts["not_used"] == counts["real"] - counts["used"]  # kept for compatibility
    calibrated = metrics_document(metrics_of(random_work), {})
    leak, counts = calibrated["leakage"], calibrated["counts"]
    assert calibrated["calibrated"] is True and calibrated["reference_check"]["passed"] is True
    assert (
        counts["flagged"] == leak["n_flagged"]
        and counts["not_flagged"] == leak["n_candidates"] - leak["n_flagged"]
    )
    for key in ("min_reference_size", "reference_too_small", "reason", "verdict"):
        assert key in leak


def test_metrics_document_passes_the_new_records_through_json_safe(random_work: Path) -> None:
    summary = metrics_of(random_work)
    summary["reference_check"] = {**summary["reference_check"], "statistic": math.nan}
    summary["reference_overlap"] = {"n_pairs": 2, "threshold": math.inf, "examples": ["a", "b"]}
    document = metrics_document(summary, {})
    assert document["reference_check"]["statistic"] is None
    assert document["reference_overlap"] == {"n_pairs": 2, "threshold": None, "examples": ["a", "b"]}
    json.dumps(document, allow_nan=False)
    uncalibrated = metrics_document({"threshold": 0.5, "n_real": 4, "n_decided_used": 2}, {})
    assert uncalibrated["reference_check"] is None and uncalibrated["reference_overlap"] is None
    assert uncalibrated["counts"]["flagged"] is None


def test_slice_stacks_with_a_shifted_reference_are_inconclusive_by_the_paired_test(tmp_path: Path) -> None:
    """Three slice stacks are three units, too few for the classifier: the paired test of near-duplicate
    slices across the reference sees the other scanner's contrast, and the report says what it saw."""
    rng = np.random.default_rng(5)
    slices = np.concatenate([slice_stack(rng, 60, 32) for _ in range(3)])
    ref = np.zeros(len(slices), dtype=bool)
    ref[rng.choice(len(slices), 70, replace=False)] = True
    for folder in ("real", "reference", "generated"):
        (tmp_path / folder).mkdir()
    for i, (img, is_ref) in enumerate(zip(slices, ref, strict=True)):
        img = img**1.4 if is_ref else img
        where = "reference" if is_ref else "real"
        Image.fromarray((img * 255).astype(np.uint8)).save(tmp_path / where / f"s{i:03d}.png")
    for j in range(20):
        Image.fromarray(random_image(rng, 32)).save(tmp_path / "generated" / f"g{j:02d}.png")
    work = tmp_path / "work"
    run_audit(
        AuditInputs(tmp_path / "real", tmp_path / "generated", reference=tmp_path / "reference"), CONFIG, work
    )
    check = metrics_of(work)["reference_check"]
    assert check["units"] < 10 and check["classifier_p_value"] is None
    assert check["pairs"] >= 20 and check["passed"] is False
    assert metrics_of(work)["leakage"]["verdict"] == "inconclusive"
    page = render_report(work)
    assert (
        "pairs of near-identical images, one in the reference and one among the candidates"
        in verdict_text(page)
    )
