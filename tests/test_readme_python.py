"""The README's Python example runs as written (issue 19): on a small set this test makes, in a folder
holding real/, generated/ and holdout/, every line of the block executes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_sets import make_membership_set, random_image

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = [b for b in python_blocks() if "synthaudit.audit(" in b]
    assert blocks, "the README has no Python example of synthaudit.audit"
    make_membership_set(tmp_path, n_used=10, n_unused=10, n_fresh_generated=20, exact_copies=True)
    rng = np.random.default_rng(1)
    (tmp_path / "holdout").mkdir()
    for j in range(40):
        Image.fromarray(random_image(rng, 32)).save(tmp_path / "holdout" / f"h{j:02d}.png")
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)  # the project's own README
    result = scope["result"]
    assert result.verdict == "detected"  # type: ignore[attr-defined]
    assert (tmp_path / "results.csv").exists() and (tmp_path / "audit.html").exists()


def first_audit_commands() -> list[list[str]]:
    """The `synthaudit` commands of the README's "A first audit" block, continuation lines joined."""
    import shlex

    section = README.read_text().split("## A first audit", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the README has no first-audit block"
    text = block.group(1).replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in text.splitlines() if line.strip()]


def test_the_readme_first_audit_runs_and_finds_the_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    from synthaudit.app.cli import main

    monkeypatch.chdir(tmp_path)
    commands = first_audit_commands()
    assert [c[0] for c in commands] == [".venv/bin/synthaudit"] * 2
    for command in commands:
        assert main(command[1:]) == 0
    printed = capsys.readouterr().out
    assert "evidence of training-data leakage" in printed and "reference check passed" in printed
    assert (
        "method default (= density_attribution)" in printed
    )  # the name the user gave, and what it stands for
    import csv

    rows = list(csv.DictReader((tmp_path / "demo" / "results.csv").open()))
    flagged = {r["id"] for r in rows if r["used"] == "1"}
    assert flagged and flagged <= {f"r{i:03d}" for i in range(20)}  # only images the generator copied
    page = (tmp_path / "demo" / "report.html").read_text()
    assert "default (= density_attribution)" in page  # the report names the method as the CLI does
