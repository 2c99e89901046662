"""The HTML report of calibrated and uncalibrated audits, built by the engine on small synthetic sets."""

from __future__ import annotations

import base64
import html
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_sets import make_membership_set, near_copy, random_image

from synthaudit.models.config import AuditConfig
from synthaudit.models.report import render_report
from synthaudit.models.stages import AuditInputs, run_audit

CONFIG = AuditConfig(method="pixels", image_size=32)
HOSTILE_REAL = "x'><img src=x onerror=alert(1)>"
HOSTILE_GEN = 'g"><i onmouseover=alert(2)>'


def leakage_sentence(page: str) -> str:
    match = re.search(r"<span class=lead id=leakage-sentence>(.*?)</span>", page)
    assert match, "the verdict has no lead sentence"
    return match.group(1)


def parse_p(text: str) -> float:
    """'0.0123' or '2.5 × 10<sup>−5</sup>' -> float."""
    m = re.fullmatch(r"([0-9.]+) × 10<sup>−(\d+)</sup>", text)
    return float(m.group(1)) * 10.0 ** -int(m.group(2)) if m else float(text)


def png_of(page: str, element_id: str) -> np.ndarray:
    match = re.search(rf"<img id={element_id} [^>]*src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert match, f"no plot {element_id}"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(match.group(1)))).convert("RGB"))


def gallery_ids(page: str) -> list[str]:
    return [html.unescape(i) for i in re.findall(r"<div class=row data-real-id='([^']*)'>", page)]


def red_pixels(rgb: np.ndarray) -> int:
    return int((np.abs(rgb.astype(int) - (0xC0, 0x39, 0x2B)).max(axis=2) <= 60).sum())


@pytest.fixture(scope="module")
def reference_audit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int], list[str]]:
    """10 used + 4 not-used candidates, a reference set of 20 hold-outs plus 2 images copied into the
    generated set (so they score high: a report mixing the pool up would show them), hostile names."""
    root = tmp_path_factory.mktemp("reference-audit")
    labels = make_membership_set(
        root, n_used=10, n_unused=24, n_fresh_generated=20, seed=11, exact_copies=True
    )
    reference = root / "reference"
    reference.mkdir()
    for image_id in sorted(k for k, v in labels.items() if v == 0)[:20]:
        (root / "real" / f"{image_id}.png").rename(reference / f"refimg_{image_id}.png")
        del labels[image_id]
    rng = np.random.default_rng(3)
    for j in range(2):
        img = random_image(rng, 32)
        Image.fromarray(near_copy(rng, img)).save(reference / f"refimg_copied_{j}.png")
        Image.fromarray(img).save(root / "generated" / f"gcopy_{j}.png")
    used = next(k for k, v in sorted(labels.items()) if v == 1)
    (root / "real" / f"{used}.png").rename(root / "real" / f"{HOSTILE_REAL}.png")
    labels[HOSTILE_REAL] = labels.pop(used)
    first_gen = min((root / "generated").glob("g0*.png"))
    first_gen.rename(root / "generated" / f"{HOSTILE_GEN}.png")
    work = root / "work"
    run_audit(AuditInputs(root / "real", root / "generated", reference=reference), CONFIG, work)
    return work, labels, sorted(p.stem for p in reference.iterdir())


def test_calibrated_report_leads_with_the_leakage_sentence(reference_audit) -> None:
    work, _, _ = reference_audit
    m = json.loads((work / "metrics.json").read_text())
    leak = m["leakage"]
    assert m["calibrated"] and leak["detected"] and leak["n_flagged"] > 0  # the set is built so
    page = render_report(work)
    sentence = leakage_sentence(page)
    match = re.fullmatch(
        r"Evidence of training-data leakage: p = (.+?); at a false discovery rate of 10 %, (\d+) of (\d+) "
        r"candidate images are flagged; at least (\d+) were used \(95 % confidence\)\.",
        sentence,
    )
    assert match, sentence
    assert parse_p(match.group(1)) == pytest.approx(leak["p_value"], rel=0.05)
    assert [int(g) for g in match.groups()[1:]] == [
        leak["n_flagged"],
        leak["n_candidates"],
        leak["used_count_lower_bound"],
    ]
    assert leak["n_candidates"] == 14 and leak["n_reference"] == 22
    assert "class='verdict risk'" in page  # a detected leak may be framed as a risk
    assert "random hold-out" in page and "another scanner, site or period" in page
    assert "id=score-histogram" not in page


def test_calibrated_report_shows_the_distributions_and_the_p_value_histogram(reference_audit) -> None:
    work, _, _ = reference_audit
    page = render_report(work)
    for plot in ("candidate-vs-reference", "p-value-histogram"):
        rgb = png_of(page, plot)
        assert rgb.shape[0] > 200 and rgb.shape[1] > 300
        assert red_pixels(rgb) > 200  # the candidates' bars are drawn
    assert "<tr><th>smallest possible p-value</th><td>0.0435</td></tr>" in page  # 1/(22 + 1)


def test_reference_set_images_stay_out_of_the_gallery(reference_audit) -> None:
    from synthaudit.models.report_data import load_report_data, reference_scores

    work, labels, reference_ids = reference_audit
    page = render_report(work, gallery_rows=100)
    assert sorted(gallery_ids(page)) == sorted(labels)  # every candidate, and only them
    for ref_id in reference_ids:
        assert ref_id not in page
    data = load_report_data(work)
    assert set(data["real_ids"]) == set(labels)
    assert len(data["real"]) == len(labels) and len(reference_scores(data)) == 22
    assert np.sort(reference_scores(data))[-2] > 0.95  # the copied reference images score high


PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "main", "h1", "h2", "p", "span"}
PAGE_TAGS |= {"b", "i", "code", "sup", "br", "table", "tr", "th", "td", "div", "img", "figure"}
PAGE_TAGS |= {"figcaption", "footer"}


class _Page(HTMLParser):
    """A page's text, tags and attributes as a browser's parser sees them (entities decoded)."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_ids_from_file_names_are_escaped(reference_audit) -> None:
    work, _, _ = reference_audit
    page = render_report(work, gallery_rows=100, subtitle="<script>alert(1)</script>")
    assert HOSTILE_REAL not in page and HOSTILE_GEN not in page and "<script" not in page
    assert HOSTILE_REAL in html.unescape(page) and HOSTILE_GEN in html.unescape(page)  # escaped, not dropped


def test_every_text_from_the_inputs_reaches_the_page_as_text(reference_audit) -> None:
    """Ids (file names), title, subtitle and patient keys: shown as typed, never as markup."""
    work, labels, _ = reference_audit
    script = "<script>alert(1)</script>"
    groups = {image_id: {"patient": f"{script}{n}"} for n, image_id in enumerate(sorted(labels))}
    page = render_report(
        work, gallery_rows=100, title=f"audit {script}", subtitle=f"{script} & co", groups=groups
    )
    parsed = _Page(page)
    assert {tag for tag, _ in parsed.tags} <= PAGE_TAGS
    for tag, attrs in parsed.tags:
        assert not [name for name, _ in attrs if name.startswith("on")], (tag, attrs)
        if tag == "img":
            assert dict(attrs)["src"].startswith("data:image/png;base64,")
    text = "".join(parsed.text)
    assert f"audit {script}" in text and f"{script} & co" in text and f"{script}0" in text
    assert HOSTILE_REAL in text and HOSTILE_GEN in text
    alts = [dict(attrs).get("alt") for tag, attrs in parsed.tags if tag == "img"]
    assert f"real image {HOSTILE_REAL}" in alts and f"generated image {HOSTILE_GEN}" in alts
    for raw in (script, HOSTILE_REAL, HOSTILE_GEN, " & co"):
        assert raw not in page


@pytest.fixture(scope="module")
def uncalibrated_audit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("uncalibrated-audit")
    make_membership_set(root, n_used=10, n_unused=10, n_fresh_generated=20, seed=2, exact_copies=True)
    work = root / "work"
    run_audit(AuditInputs(root / "real", root / "generated"), CONFIG, work)
    return work


def test_uncalibrated_report_states_no_count_and_no_risk_frame(uncalibrated_audit) -> None:
    m = json.loads((uncalibrated_audit / "metrics.json").read_text())
    assert m["calibrated"] is False and m["leakage"] is None and m["n_decided_used"] == 10
    page = render_report(uncalibrated_audit)
    text = re.sub(r"<[^>]+>", "", page)
    assert "verdict risk" not in page
    assert "10 of 20" not in text and "appear to be in the training set" not in text
    assert "decided used" not in text and "are flagged" not in text
    assert "ranking is all this audit can give" in text
    assert "--reference DIR" in text and "used=0" in text
    assert "id=score-histogram" in page and "id=p-value-histogram" not in page


@pytest.fixture(scope="module")
def null_audit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """No candidate is used: the reference is drawn like the candidates."""
    root = tmp_path_factory.mktemp("null-audit")
    labels = make_membership_set(root, n_used=0, n_unused=30, n_fresh_generated=30, seed=4)
    reference = root / "reference"
    reference.mkdir()
    for image_id in sorted(labels)[::2]:
        (root / "real" / f"{image_id}.png").rename(reference / f"{image_id}.png")
    work = root / "work"
    run_audit(AuditInputs(root / "real", root / "generated", reference=reference), CONFIG, work)
    return work


def test_no_evidence_says_what_it_does_not_prove(null_audit) -> None:
    leak = json.loads((null_audit / "metrics.json").read_text())["leakage"]
    assert not leak["detected"] and leak["n_reference"] == 15
    page = render_report(null_audit)
    sentence = leakage_sentence(page)
    assert sentence.startswith("No evidence of training-data leakage was found at level 0.05 (p = ")
    assert parse_p(re.search(r"\(p = (.+?)\)", sentence).group(1)) == pytest.approx(leak["p_value"], rel=0.05)
    assert f"{leak['n_flagged']} of 15 candidate images are flagged" in sentence
    assert "verdict risk" not in page
    assert "not proof" in page and "there were 15" in page and "1/16 = 0.0625" in page


# --- patients ---------------------------------------------------------------------------------------


def test_calibrated_patients_get_p_values_against_reference_patients(tmp_path: Path) -> None:
    from dicom_sets import dicom_file, make_dicom_set

    from synthaudit.models.groups import read_groups
    from synthaudit.models.results import read_results_csv

    data = make_dicom_set(tmp_path / "dicom")
    reference = tmp_path / "reference"
    reference.mkdir()
    rng = np.random.default_rng(9)
    for p in range(24):
        for j in range(3):  # like the candidates: three images per patient, never copied
            (reference / f"ref_{p:02d}_{j}.dcm").write_bytes(
                dicom_file(random_image(rng, 32), f"REF-{p:02d}-SECRET", f"1.2.3.{p}", f"1.2.3.{p}.{j}")
            )
    work = tmp_path / "work"
    run_audit(AuditInputs(data.root / "real", data.root / "generated", reference=reference), CONFIG, work)
    groups, ref_groups = read_groups(data.root / "real"), read_groups(reference)
    page = render_report(work, groups=groups, reference_groups=ref_groups)

    # the patient p-values, computed here from the per-image scores (patient score = max, rule "any")
    def patient_max(rows, g):
        out: dict[str, float] = {}
        for r in rows:
            out[g[r.id].patient] = max(out.get(g[r.id].patient, -np.inf), r.score)
        return out

    cand = patient_max(read_results_csv(work / "results.csv"), groups)
    ref = np.array(list(patient_max(read_results_csv(work / "reference.csv"), ref_groups).values()))
    assert len(cand) == 6 and ref.size == 24
    p_values = {k: (1 + (ref >= s).sum()) / (ref.size + 1) for k, s in cand.items()}
    order = sorted(p_values.values())
    flagged = max([k for k in range(1, 7) if order[k - 1] <= 0.1 * k / 6], default=0)
    assert flagged >= 2  # the copied patients
    assert f"<b>{flagged} of 6 candidate patients are flagged</b>" in page
    assert "24 reference patients" in page
    for patient, p in p_values.items():
        row = re.search(rf"<tr><td><code>{patient}</code></td>.*?</tr>", page)
        assert row and f"<td class=n>{p:.3g}</td>" in row.group(0)
    assert "SECRET" not in page


def test_without_reference_patients_the_patients_are_not_calibrated(tmp_path: Path) -> None:
    """The CLI path: groups of the real images only, the reference set's absent."""
    from dicom_sets import make_dicom_set

    from synthaudit.models.groups import read_groups

    data = make_dicom_set(tmp_path / "dicom")
    reference = tmp_path / "reference"
    reference.mkdir()
    rng = np.random.default_rng(5)
    for j in range(12):  # PNGs: known not used, without patient keys
        Image.fromarray(random_image(rng, 32)).save(reference / f"ref_{j:02d}.png")
    work = tmp_path / "work"
    run_audit(AuditInputs(data.root / "real", data.root / "generated", reference=reference), CONFIG, work)
    page = render_report(work, groups=read_groups(data.root / "real"))
    assert "<h2>Patients</h2>" in page and "No patient is known not to be used" in page
    assert "candidate patients are flagged" not in page
