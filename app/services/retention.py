"""Retention: delete finished audits and unused datasets older than RETENTION_DAYS (0 keeps everything)."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from app import repository as repo
from app.db import session_scope
from app.services.storage import Storage
from app.tables import utcnow

log = logging.getLogger(__name__)


def purge_expired(sessions: sessionmaker[Session], storage: Storage, retention_days: int) -> tuple[int, int]:
    """Remove expired audits, then expired datasets no active audit uses; return (audits, datasets)."""
    if retention_days <= 0:
        return 0, 0
    before = utcnow() - timedelta(days=retention_days)
    with session_scope(sessions) as session:
        audits = repo.expired_audits(session, before)
        for audit_id in audits:
            repo.delete_audit(session, audit_id)
        datasets = repo.expired_datasets(session, before)
        for dataset_id in datasets:
            repo.delete_dataset(session, dataset_id)
    for audit_id in audits:
        storage.remove_audit(audit_id)
    for dataset_id in datasets:
        storage.remove_dataset(dataset_id)
    if audits or datasets:
        log.info("retention: removed %d audit(s) and %d dataset(s)", len(audits), len(datasets))
    return len(audits), len(datasets)
