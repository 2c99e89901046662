"""A tenant's audit by id, for the services that read it (audits, patients, reports)."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from synthaudit.app.core import repository as repo
from synthaudit.app.core.tables import Audit
from synthaudit.app.problems import NotFound, NotReady


def owned_audit(session: Session, audit_id: uuid.UUID, tenant: str) -> Audit:
    """The audit of this tenant; another tenant's is a 404 too."""
    audit = repo.get_audit(session, audit_id, tenant)
    if audit is None:
        raise NotFound(f"no audit {audit_id}")
    return audit


def finished_audit(session: Session, audit_id: uuid.UUID, tenant: str) -> Audit:
    """The tenant's audit once it has succeeded; 409 not-ready before (with its error, if it failed)."""
    audit = owned_audit(session, audit_id, tenant)
    if audit.status != "succeeded":
        hint = f": {audit.error}" if audit.error else ""
        raise NotReady(f"the audit is {audit.status}{hint}; results exist once it has succeeded")
    return audit
