"""synthaudit: audit synthetic (medical) images for training-data leakage.

One import name for the whole distribution: the service (`synthaudit.app`), the ML core
(`synthaudit.models`) and the Celery workers (`synthaudit.worker`) live in the repository's `app/`,
`models/` and `worker/` folders, linked here, so nothing is installed as `app`, `models` or `worker`.

In a notebook: `result = synthaudit.audit("real/", "generated/", reference="holdout/")`, then
`result.verdict`, `result.leakage`, `result.write_csv("results.csv")`, `result.report("audit.html")`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("synthaudit")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

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
