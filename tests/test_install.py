"""One import name (issue 19): a regular, non-editable install exposes `synthaudit` and nothing else, and
works from a folder that holds its own `models/`, `app/` and `worker/` packages (a training repository).

The fresh virtual environment borrows this environment's third-party packages through a path file (no
download, no second torch) and gets synthaudit itself from `pip install --no-deps .` of a copy of the
source tree, so the test sees exactly what a wheel would install.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from synthetic_sets import make_membership_set

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "alembic.ini", "app", "models", "worker", "alembic", "synthaudit")
DECOY = "print('DECOY PACKAGE IMPORTED')\n"


def _run(argv: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(python of a fresh venv with a regular install of this tree, a folder with decoy packages)."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    source.mkdir()
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, source / name)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], base
        ).stdout.strip()
    )
    borrowed = [p for p in sys.path if p.endswith("site-packages")] or [sysconfig.get_paths()["purelib"]]
    (purelib / "borrowed.pth").write_text("\n".join(borrowed) + "\n")
    pip = _run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(source)],
        base,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    user = base / "training-repo"
    for name in ("models", "app", "worker"):
        (user / name).mkdir(parents=True)
        (user / name / "__init__.py").write_text(DECOY)
    return python, user


@pytest.mark.slow
def test_nothing_is_installed_as_app_models_or_worker(installed: tuple[Path, Path]) -> None:
    python, user = installed
    code = (
        "import sysconfig, pathlib; site = pathlib.Path(sysconfig.get_paths()['purelib']);"
        "print(sorted(p.name for p in site.iterdir() if p.name in ('app', 'models', 'worker', 'synthaudit')))"
    )
    result = _run([str(python), "-c", code], user)
    assert result.stdout.strip() == "['synthaudit']", result.stdout + result.stderr
    show = _run([str(python), "-m", "pip", "show", "-f", "synthaudit"], user)
    files = [line.strip() for line in show.stdout.split("Files:", 1)[1].splitlines() if line.strip()]
    tops = {f.split("/", 1)[0] for f in files if not f.startswith("..")}
    assert "synthaudit" in tops and not tops & {"app", "models", "worker"}, tops


@pytest.mark.slow
def test_import_synthaudit_loads_our_code_beside_a_users_own_packages(installed: tuple[Path, Path]) -> None:
    python, user = installed
    code = (
        "import synthaudit, synthaudit.models.stages, synthaudit.app.cli, synthaudit.worker.celery_app, models;"
        "print(synthaudit.__version__);"
        "print(synthaudit.models.stages.__file__);"
        "print(models.__file__)"
    )
    result = _run([str(python), "-c", code], user)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "DECOY PACKAGE IMPORTED"  # the user's own `import models` gets the user's package
    assert lines[1] != "0+unknown"
    assert "site-packages/synthaudit/models/stages" in lines[2]
    assert lines[3] == str(user / "models" / "__init__.py")


@pytest.mark.slow
def test_the_cli_python_m_and_the_worker_run_from_a_users_repository(installed: tuple[Path, Path]) -> None:
    python, user = installed
    make_membership_set(user / "data", n_used=6, n_unused=6, n_fresh_generated=10, exact_copies=True)
    script = python.parent / "synthaudit"
    audit = [
        "audit", "--real", "data/real", "--generated", "data/generated", "--method", "pixels",
        "--image-size", "32", "--out", "results.csv",
    ]  # fmt: skip
    by_script = _run([str(script), *audit], user)
    assert by_script.returncode == 0, by_script.stderr[-2000:]
    assert (user / "results.csv").read_text().startswith("id,")
    by_module = _run([str(python), "-m", "synthaudit", "--help"], user)
    assert by_module.returncode == 0 and "audit" in by_module.stdout, by_module.stderr[-2000:]
    worker = _run(
        [str(python), "-m", "celery", "-A", "synthaudit.worker.celery_app", "inspect", "--help"], user
    )
    assert worker.returncode == 0, worker.stderr[-2000:]
    migrations = _run(
        [str(python), "-c", "from synthaudit.app.core.migrations import script_location as s; print(s())"],
        user,
    )
    assert migrations.returncode == 0 and "site-packages/synthaudit/alembic" in migrations.stdout, (
        migrations.stderr
    )
    for result in (by_script, by_module, worker, migrations):
        assert "DECOY" not in result.stdout + result.stderr  # our code never imported the user's packages
