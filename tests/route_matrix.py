"""Every route of the app as (method, path), and paths filled with ids: the matrices of tests/api/test_auth.py
(server processes) and tests/inprocess/test_matrices.py (in-process) enumerate the same routes."""

from __future__ import annotations

import re
import uuid
from typing import Any


def route_list(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route of the app, HEAD and OPTIONS left out."""
    try:  # FastAPI >= 0.16x keeps included routers as such: flatten them
        from fastapi.routing import iter_route_contexts

        found = [(c.methods, c.path) for c in iter_route_contexts(app.routes)]
    except ImportError:
        found = [(getattr(r, "methods", None), r.path) for r in app.routes]
    routes: list[tuple[str, str]] = []
    for methods, path in found:
        routes += [(m, path) for m in sorted((methods or {"GET"}) - {"HEAD", "OPTIONS"})]
    return routes


def fill(path: str, ids: dict[str, str]) -> str:
    """The path with each {param} replaced by the id of that kind in `ids` (`*dataset_id` by the dataset's),
    or a fresh uuid remembered in `ids` when there is none (a kind of resource the owner has none of)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in ids:
            return ids[name]
        if name.endswith("dataset_id") and "dataset_id" in ids:
            return ids["dataset_id"]
        return ids.setdefault(name, str(uuid.uuid4()))

    return re.sub(r"{([^}:]+)(:[^}]*)?}", value, path)
