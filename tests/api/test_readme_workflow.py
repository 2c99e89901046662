"""The README's REST workflow, run as written: its `bash` block of "Service (REST)", taken from README.md,
against the embedded server (no key) and the distributed one (a key in SYNTHAUDIT_API_KEY) gives the
same results.csv; without the key it stops with the API's own answer (401 and its detail), not with a
`KeyError` from the line that parses the upload's id."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block() -> str:
    """The first ```bash block of the README's "## Service (REST)" section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Service (REST)") :]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "no bash block under '## Service (REST)' in README.md"
    return match.group(1)


def run_block(
    membership_set, tmp_path: Path, api_url: str, key: str | None, elsewhere: bool = False
) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    """Run the block under bash -e in a folder holding real/ and generated/, or (`elsewhere`) from another
    folder with REAL_DIR and GEN_DIR pointing at them."""
    if shutil.which("zip") is None:
        pytest.fail("the README's workflow needs `zip` (apt-get install zip)")
    work = tmp_path / "workflow"
    for sub in ("real", "generated"):
        shutil.copytree(membership_set[0] / sub, work / sub)
    script = work / "readme.sh"
    script.write_text(readme_block(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "SYNTHAUDIT_API_KEY"}
    env["API"] = api_url
    if key is not None:
        env["SYNTHAUDIT_API_KEY"] = key
    cwd = work
    if elsewhere:
        env["REAL_DIR"], env["GEN_DIR"] = str(work / "real"), str(work / "generated")
        cwd = tmp_path / "elsewhere"
        cwd.mkdir()
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", str(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def finished_csv(run: subprocess.CompletedProcess[str], folder: Path) -> bytes:
    assert run.returncode == 0, f"rc {run.returncode}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    assert '"status":"succeeded"' in run.stdout.replace(" ", "")
    assert '"calibrated"' in run.stdout  # the metrics document
    results = (folder / "workflow" / "results.csv").read_bytes()
    lines = results.decode().splitlines()
    assert lines[0].startswith("id,used,score") and len(lines) == 21  # one row per real image
    return results


def test_the_readme_workflow_in_both_modes_and_without_a_key(
    api, celery_worker, tenant_keys, embedded_api, membership_set, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    keyed = run_block(membership_set, tmp_path / "keyed", api.url, key=tenant_keys["a"])
    embedded = run_block(membership_set, tmp_path / "embedded", embedded_api.url, key=None)
    assert finished_csv(keyed, tmp_path / "keyed") == finished_csv(embedded, tmp_path / "embedded")
    missing = run_block(membership_set, tmp_path / "nokey", api.url, key=None)
    assert missing.returncode != 0
    assert "synthaudit: 401 an API key is required" in missing.stderr, missing.stderr[-2000:]
    assert "KeyError" not in missing.stderr and "Traceback" not in missing.stderr


def test_the_readme_workflow_from_another_folder_and_against_nothing(
    embedded_api, membership_set, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Paths are variables: from another folder it works with REAL_DIR/GEN_DIR; against a port where nothing
    listens it stops at the first call with one line, not a Python traceback, and its JSON is indented."""
    run = run_block(membership_set, tmp_path / "a", embedded_api.url, key=None, elsewhere=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "a" / "elsewhere" / "results.csv").read_text().startswith("id,used,score")
    assert '\n    "status": "succeeded"' in run.stdout  # json.tool's indented output
    nothing = run_block(membership_set, tmp_path / "b", "http://127.0.0.1:9", key=None)
    assert nothing.returncode != 0 and "Traceback" not in nothing.stderr
    assert "synthaudit: no JSON answer from http://127.0.0.1:9" in nothing.stderr, nothing.stderr
