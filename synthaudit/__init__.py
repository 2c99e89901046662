"""synthaudit: audit synthetic (medical) images for training-data leakage.

One import name for the whole distribution: the service (`synthaudit.app`), the ML core
(`synthaudit.models`) and the Celery workers (`synthaudit.worker`) live in the repository's `app/`,
`models/` and `worker/` folders, linked here, so nothing is installed as `app`, `models` or `worker`.

In a notebook: `result = synthaudit.audit("real/", "generated/", reference="holdout/")`, then
`result.verdict`, `result.leakage`, `result.write_csv("results.csv")`, `result.report("audit.html")`.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("synthaudit")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from synthaudit.api import Audit, AuditConfigError, AuditError, AuditInputError, Series, audit, compare

__all__ = [
    "Audit",
    "AuditConfigError",
    "AuditError",
    "AuditInputError",
    "Series",
    "__version__",
    "audit",
    "compare",
]
_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    """The Python API, imported on first use: `import synthaudit.worker...` stays light."""
    if name in _API:
        from synthaudit import api

        return getattr(api, name)
    raise AttributeError(f"module 'synthaudit' has no attribute {name!r}")
