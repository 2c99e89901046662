"""The layers point one way (docs/architecture.md): checked on the source, every import counted.

Top-level and function-local imports alike, read with `ast` from every module of app/, worker/ and
models/. A failure names the file and the import that breaks the rule.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "worker", "models")
WEB_STACK = ("fastapi", "starlette", "uvicorn", "fastapi_offline", "python_multipart", "multipart")
DATABASE_AND_QUEUE = ("sqlalchemy", "alembic", "celery", "kombu", "redis", "psycopg")
# The composition roots: they may see the workers (the embedded mode runs them in-process).
COMPOSITION_ROOTS = (
    "synthaudit.app.composition",
    "synthaudit.app.cli",
    "synthaudit.app.cli_service",
    "synthaudit.app.cli_workflow",
)


def module_name(path: Path) -> str:
    """The installed name: app/x.py is synthaudit.app.x (synthaudit/ links the three folders)."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["synthaudit", *parts])


def imports_of(path: Path) -> list[str]:
    """Every module name an import statement in the file names (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append(base)
            # `from app.core import repository` imports the module app.core.repository
            found.extend(f"{base}.{alias.name}" for alias in node.names)
    return found


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = project_modules()


def graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    return {
        name: {imp for imp in imports_of(path) if imp in MODULES and imp != name}
        for name, path in MODULES.items()
    }


def starts(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(rule: str, sources: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{rule}: {src} imports {imp}"
        for src in sources
        for imp in imports_of(MODULES[src])
        if starts(imp, *forbidden)
    ]


def test_models_never_import_the_service_tiers_or_the_web_stack() -> None:
    bad = violations(
        "models",
        [m for m in MODULES if starts(m, "synthaudit.models")],
        ("synthaudit.app", "synthaudit.worker", *WEB_STACK, *DATABASE_AND_QUEUE),
    )
    assert not bad, "\n".join(bad)


def test_core_stands_on_models_only() -> None:
    core = [m for m in MODULES if starts(m, "synthaudit.app.core")]
    assert core, "app/core is missing"
    upward = [
        f"synthaudit.app.core: {src} imports {imp}"
        for src in core
        for imp in imports_of(MODULES[src])
        if (starts(imp, "synthaudit.app") and not starts(imp, "synthaudit.app.core"))
        or starts(imp, "synthaudit.worker", *WEB_STACK)
    ]
    assert not upward, "\n".join(upward)


def test_web_tier_never_imports_the_workers_or_celery() -> None:
    web = [
        m
        for m in MODULES
        if starts(m, "synthaudit.app") and not starts(m, "synthaudit.app.core", *COMPOSITION_ROOTS)
    ]
    bad = violations("web tier", web, ("synthaudit.worker", "celery", "kombu"))
    assert not bad, "\n".join(bad)


def test_workers_never_import_the_web_tier() -> None:
    workers = [m for m in MODULES if starts(m, "synthaudit.worker")]
    upward = [
        f"worker: {src} imports {imp}"
        for src in workers
        for imp in imports_of(MODULES[src])
        if (starts(imp, "synthaudit.app") and not starts(imp, "synthaudit.app.core"))
        or starts(imp, *WEB_STACK)
    ]
    assert not upward, "\n".join(upward)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in edges:
        if node not in index:
            visit(node)
    return found


def test_no_import_circle() -> None:
    edges = graph()
    # A package's __init__ importing its own submodules (the encoder families registering) is not a circle.
    for name in edges:
        edges[name] = {
            imp for imp in edges[name] if not (MODULES[imp].name == "__init__.py" and starts(name, imp))
        }
    found = cycles(edges)
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checker_sees_a_circle_and_an_upward_import(tmp_path: Path) -> None:
    """The rules above can fail: a made-up circle is found, and a planted import is read."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from synthaudit.worker.pipeline import WorkerContext\n")
    assert "synthaudit.worker.pipeline" in list(ast_imports(planted))


def ast_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]


@pytest.mark.slow
@pytest.mark.parametrize("embedded", [False, True])
def test_the_api_process_imports_the_workers_only_in_the_embedded_mode(
    embedded: bool, tmp_path: Path
) -> None:
    """Distributed: create_app and a request never load `worker`; embedded: the runner is in-process."""
    env_broker = "" if embedded else "redis://127.0.0.1:6379/15"
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from synthaudit.app.core.config import Settings\n"
        "from synthaudit.app.main import create_app\n"
        f"s = Settings(celery_broker_url={env_broker!r}, synthaudit_home={str(tmp_path)!r}, group_key_secret='x' * 32)\n"
        "app = create_app(s)\n"
        "print(TestClient(app).get('/healthz').status_code)\n"
        "print(sorted(m for m in sys.modules if m == 'synthaudit.worker' or m.startswith('synthaudit.worker.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    ).stdout.splitlines()
    assert out[0] == "200"
    loaded = ast.literal_eval(out[1])
    if embedded:
        assert "synthaudit.worker.runner" in loaded
    else:
        assert loaded == []


def test_project_code_is_imported_by_its_one_name() -> None:
    """Every import of our code says synthaudit.app / .models / .worker: a bare `app`, `models` or
    `worker` would load a second copy from the working directory (or a user's own package)."""
    files = [
        *MODULES.values(),
        *sorted((ROOT / "tests").rglob("*.py")),
        *sorted((ROOT / "benchmarks").rglob("*.py")),
    ]
    bad = [
        f"{path.relative_to(ROOT)} imports {imp}"
        for path in files
        for imp in imports_of(path)
        if starts(imp, *PACKAGES)
    ]
    assert not bad, "\n".join(bad)
