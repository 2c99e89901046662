"""Patient-level calibrated verdicts: a patient's aggregated score against the reference patients'."""

from __future__ import annotations

import numpy as np
import pytest

from synthaudit.models.groups import GroupKeys, aggregate_patients, calibrate_patients, reference_patients


def _patients(rng: np.random.Generator, n_patients: int, slices: int, shift_of, offset: int = 0):
    """Image ids, scores and groups: each patient has a random effect shared by its slices
    (images of one patient are strongly correlated), plus `shift_of(patient index)`."""
    ids, scores, groups = [], [], {}
    for p in range(n_patients):
        effect = rng.normal() + shift_of(p)
        for s in range(slices):
            image_id = f"p{offset + p}-s{s}"
            ids.append(image_id)
            scores.append(effect + 0.3 * rng.normal())
            groups[image_id] = GroupKeys(patient=f"P{offset + p}")
    return ids, scores, groups


def test_reference_patients_are_those_whose_images_are_all_reference() -> None:
    groups = {"a": GroupKeys("P1"), "b": GroupKeys("P1"), "c": GroupKeys("P2"), "d": GroupKeys("P3")}
    roles = ["reference", "reference", "reference", "candidate"]
    assert reference_patients(["a", "b", "c", "d"], roles, groups) == {"P1", "P2"}
    assert reference_patients(["a", "b"], ["reference", "candidate"], groups) == set()


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["any", "mean-score"])
def test_patient_p_values_are_valid_where_image_p_values_are_not(rule: str) -> None:
    """Under the null (no patient used), patient-level p-values stay super-uniform although every
    patient's slices share one random effect; BH flags a patient in at most ~fdr of the draws."""
    rng = np.random.default_rng(0)
    draws, small, any_flag = 1500, 0, 0
    for _ in range(draws):
        c_ids, c_scores, c_groups = _patients(rng, 30, 8, lambda p: 0.0)
        r_ids, r_scores, r_groups = _patients(rng, 20, 8, lambda p: 0.0, offset=1000)
        ids, scores = c_ids + r_ids, c_scores + r_scores
        groups = {**c_groups, **r_groups}
        patients = aggregate_patients(ids, scores, [0] * len(ids), groups, 0.0, rule)
        ref = reference_patients(ids, ["candidate"] * len(c_ids) + ["reference"] * len(r_ids), groups)
        out = calibrate_patients(patients, ref, fdr=0.1)
        candidate_p = [r.p_value for r in out if r.role == "candidate"]
        small += sum(p <= 0.1 for p in candidate_p)  # type: ignore[operator]
        any_flag += any(r.used for r in out)
    rate = small / (draws * 30)
    assert rate <= 0.1 + 3 * np.sqrt(0.09 / draws)  # per-patient validity (draws are the unit of error)
    assert any_flag / draws <= 0.1 + 3 * np.sqrt(0.09 / draws)  # FDR = P(any flag) under the null


def test_used_patients_are_flagged_and_references_are_not_decided() -> None:
    rng = np.random.default_rng(1)
    c_ids, c_scores, c_groups = _patients(rng, 40, 5, lambda p: 4.0 if p < 15 else 0.0)
    r_ids, r_scores, r_groups = _patients(rng, 60, 5, lambda p: 0.0, offset=1000)
    ids, scores, groups = c_ids + r_ids, c_scores + r_scores, {**c_groups, **r_groups}
    patients = aggregate_patients(ids, scores, [0] * len(ids), groups, 0.0, "mean-score")
    ref = reference_patients(ids, ["candidate"] * len(c_ids) + ["reference"] * len(r_ids), groups)
    out = {r.patient: r for r in calibrate_patients(patients, ref, fdr=0.1)}
    flagged = {p for p, r in out.items() if r.used}
    used = {f"P{i}" for i in range(15)}
    assert len(flagged & used) >= 12
    assert len(flagged - used) <= 2
    assert all(out[p].role == "reference" and out[p].p_value is None and out[p].used == 0 for p in ref)
    assert all(
        r.q_value is not None and r.q_value >= r.p_value for r in out.values() if r.role == "candidate"
    )


def test_without_reference_patients_nothing_changes() -> None:
    rng = np.random.default_rng(2)
    ids, scores, groups = _patients(rng, 5, 3, lambda p: 0.0)
    patients = aggregate_patients(ids, scores, [1, 0, 0] * 5, groups, 0.0, "any")
    assert calibrate_patients(patients, set(), 0.1) == patients


def test_group_keys_of_a_deflated_dicom_are_not_read(tmp_path, proc_tools) -> None:  # type: ignore[no-untyped-def]
    """The CLI report reads patient keys with pydicom, which inflates a deflated data set whole even to
    read three tags: such a file is left out, in bounded memory; an ordinary DICOM still gives its keys."""
    import os

    from dicom_sets import dicom_file
    from hostile_inputs import deflated_dicom
    from synthetic_sets import random_image

    from synthaudit.models.groups import keys_from_file, read_groups

    (tmp_path / "bomb.dcm").write_bytes(deflated_dicom(768 * 1024 * 1024))
    (tmp_path / "ok.dcm").write_bytes(
        dicom_file(random_image(np.random.default_rng(0), 16), "PAT-1", "1.2", "1.2.3")
    )
    with proc_tools.memory_rise(os.getpid()) as rise:
        assert keys_from_file(tmp_path / "bomb.dcm", "s" * 16) is None
        groups = read_groups(tmp_path, "s" * 16)
    assert rise.mib < 128
    assert set(groups) == {"ok"} and groups["ok"].patient
