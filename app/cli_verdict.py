"""The CLI's verdict line: one sentence from an audit's metrics (the decide summary or the metrics
document of GET /v1/audits/{id}/metrics: both carry leakage, reference_check and fdr)."""

from __future__ import annotations


def verdict_line(m: dict) -> str:
    """The audit's answer in one line: the leakage test when calibrated (with the reference check), the
    reason when the verdict is inconclusive, else what is missing."""
    leak = m.get("leakage")
    check = m.get("reference_check") or None
    if not leak:
        return (
            "uncalibrated: the scores rank the images, but no error rate can be given; pass images known "
            "not to be used (--labels with used=0 rows, or --reference DIR) for a calibrated verdict"
        )
    if leak.get("verdict") == "inconclusive":
        measured = ""
        if check and check.get("p_value") is not None:
            auc = check.get("statistic")
            measured = f" (reference check p {_p_text(check['p_value'])}" + (
                f", AUC {auc:.2f})" if auc is not None else ")"
            )
        return (
            f"inconclusive: the reference images differ from the candidates{measured}, without looking at "
            "the generated images; their scores cannot say whether the generator leaks. Use images set aside "
            "at random before training."
        )
    detected = leak.get("verdict", "detected" if leak.get("detected") else "not_detected") == "detected"
    found = "evidence of training-data leakage" if detected else "no evidence of training-data leakage"
    parts = [
        f"{found} (p = {leak['p_value']:.3g}, {leak['test']}, {_count(leak['n_reference'], 'reference image')})"
    ]
    fdr = m.get("fdr") if m.get("fdr") is not None else leak.get("fdr")
    if leak.get("reference_too_small"):
        needed = leak.get("min_reference_size")
        parts.append(
            f"with {_count(leak['n_reference'], 'reference image')} nothing can be flagged at FDR {fdr:g}"
            + (f" (at least {needed} are needed)" if needed is not None else "")
        )
    else:
        parts.append(f"at FDR {fdr:g}: {leak['n_flagged']} of {leak['n_candidates']} candidates flagged")
    bound = leak.get("used_count_lower_bound")
    if bound:
        parts.append(f"at least {bound} used ({leak['confidence']:.0%} confidence)")
    else:
        parts.append("no lower bound above zero can be given on how many were used")
    if check and check.get("passed"):
        parts.append(f"reference check passed (p {_p_text(check['p_value'])})")
    elif check and check.get("passed") is None:
        parts.append(
            f"reference check not made ({check.get('units')} independent units and {check.get('pairs') or 0} "
            "near-duplicate pairs across the reference, too few): nothing checked "
            "that the reference is drawn like the candidates"
        )
    return "; ".join(parts)


def _p_text(p: float) -> str:
    """A p-value after "p": "= 0.41", "= 1.2e-08", "< 1e-15" below what doubles resolve."""
    return "< 1e-15" if p < 1e-15 else f"= {p:.2g}"


def _count(n: int, noun: str) -> str:
    """ "1 reference image", "12 reference images"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
