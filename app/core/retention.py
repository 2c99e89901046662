"""Retention: after RETENTION_DAYS, uploaded images and derived artifacts are purged (0 keeps everything).

What goes: a dataset's image files and image rows (names, hashes), a finished audit's work folder
(decoded pixels, encoder weights, features, neighbours, reports), a registered encoder's weights (an
MAE trained on patient images can memorise them, so its weights count as derived patient data), a
finished comparison's files (comparisons/<id>: per-checkpoint results with image ids, the report).
What stays: the dataset's summary row, the audit's row, results and metrics, so results.csv and
/metrics still answer, the encoder's row (its datasets, data hash and loss) as provenance, and the
comparison's row with its table and summary.
Nothing in use is purged: datasets and encoders of queued or running audits, datasets of queued or
running comparisons, encoders still training.
Stale upload staging folders (an API process that died mid-upload) are removed as well.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from synthaudit.app.core import repository as repo
from synthaudit.app.core.db import session_scope
from synthaudit.app.core.storage import Storage
from synthaudit.app.core.tables import utcnow

log = logging.getLogger(__name__)
STALE_TMP_S = 24 * 3600.0


def purge_expired(
    sessions: sessionmaker[Session], storage: Storage, retention_days: float
) -> tuple[int, int]:
    """Purge expired audits' work folders and expired datasets' images; return (audits, datasets)."""
    if retention_days <= 0:
        return 0, 0
    before = utcnow() - timedelta(days=retention_days)
    with session_scope(sessions) as session:
        audits = repo.expired_audits(session, before)
        datasets = repo.expired_datasets(session, before)
        encoders = repo.expired_encoders(session, before)
        comparisons = repo.expired_comparisons(session, before)
    # Files first, then the marks: a crash in between leaves rows that are simply purged again.
    for audit_id in audits:
        storage.remove_audit(audit_id)
    for dataset_id in datasets:
        storage.remove_dataset(dataset_id)
    for encoder_id in encoders:
        storage.encoder_weights(encoder_id).unlink(missing_ok=True)
    for comparison_id in comparisons:
        storage.remove_comparison(comparison_id)
    with session_scope(sessions) as session:
        for audit_id in audits:
            repo.mark_audit_purged(session, audit_id)
        for dataset_id in datasets:
            repo.mark_dataset_purged(session, dataset_id)
        for encoder_id in encoders:
            repo.mark_encoder_purged(session, encoder_id)
        for comparison_id in comparisons:
            repo.mark_comparison_purged(session, comparison_id)
    removed_tmp = purge_stale_tmp(storage)
    if audits or datasets or encoders or comparisons or removed_tmp:
        log.info(
            "retention: purged %d audit work folder(s), %d dataset(s), %d encoder(s), "
            "%d comparison folder(s), %d stale upload folder(s)",
            len(audits),
            len(datasets),
            len(encoders),
            len(comparisons),
            removed_tmp,
        )
    return len(audits), len(datasets)


def purge_stale_tmp(storage: Storage, older_than_s: float = STALE_TMP_S) -> int:
    """Remove upload staging folders and temp files left behind for more than a day."""
    tmp = storage.root / "tmp"
    if not tmp.is_dir():
        return 0
    cutoff, removed = time.time() - older_than_s, 0
    for entry in tmp.iterdir():
        try:
            if entry.lstat().st_mtime < cutoff:
                if entry.is_dir():
                    storage.remove_tree(entry)
                else:
                    entry.unlink(missing_ok=True)
                removed += 1
        except OSError:
            continue
    return removed
