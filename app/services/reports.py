"""The HTML report of a finished audit, rendered from its work folder by `models.report` and cached there."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from sqlalchemy.orm import Session

from synthaudit.app.core.storage import Storage
from synthaudit.app.problems import Conflict
from synthaudit.app.services import patients
from synthaudit.app.services.audit_access import finished_audit

log = logging.getLogger(__name__)


def audit_report(
    session: Session,
    storage: Storage,
    audit_id: uuid.UUID,
    aggregation: str | None = None,
    *,
    tenant: str,
) -> Path:
    """The report file of a succeeded audit (rendered once per aggregation rule, then served from disk)."""
    from synthaudit.models.report import write_report
    from synthaudit.models.workdir import WorkDir

    audit = finished_audit(session, audit_id, tenant)
    workdir = storage.audit_workdir(audit_id)
    if not WorkDir(workdir).results_csv.exists():
        raise Conflict(
            "the audit's work folder is gone (deleted by retention?); run the audit again for a report"
        )
    grouping = patients.audit_grouping(session, audit, aggregation)
    path = WorkDir(workdir).report(grouping.aggregation)
    if path.exists():
        return path
    # the reference set's patients are the reference of the patient-level p-values
    reference_groups = patients.dataset_groups(session, audit.reference_dataset_id) if grouping.groups else {}
    write_report(
        workdir,
        path,
        labels=grouping.image_labels or None,
        groups=grouping.groups or None,
        reference_groups=reference_groups or None,
        aggregation=grouping.aggregation,
        patient_labels=grouping.patient_labels or None,
        subtitle=f"audit {audit_id} · finished {audit.finished_at:%Y-%m-%d %H:%M} UTC"
        if audit.finished_at
        else f"audit {audit_id}",
    )
    log.info("audit %s: report rendered", audit_id)
    return path
