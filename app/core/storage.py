"""Where datasets and audit work folders live on disk, with atomic moves and best-effort removal.

Everything the service creates here is private, whatever the umask: folders 0700, files 0600 (app/core/home.py);
an upload's files are made so before the upload is published.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from synthaudit.app.core.home import private_dir, private_tree


class Storage:
    """STORAGE_DIR layout: datasets/<id>/images/..., audits/<id>/ (stage artifacts), encoders/<id>.safetensors,
    comparisons/<id>/{work,out}/, tmp/ (uploads)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def ensure(self) -> None:
        """Create the top-level folders (0700; the root tightened to 0700 when it already exists)."""
        private_dir(self.root)
        for sub in ("datasets", "audits", "tmp"):
            private_dir(self.root / sub)

    def dataset_images(self, dataset_id: uuid.UUID) -> Path:
        """The folder holding a dataset's images (the engine reads it as a folder source)."""
        return self.root / "datasets" / str(dataset_id) / "images"

    def audit_workdir(self, audit_id: uuid.UUID) -> Path:
        """The work folder of an audit's stage artifacts."""
        return self.root / "audits" / str(audit_id)

    def comparison_dir(self, comparison_id: uuid.UUID) -> Path:
        """A comparison's folder: work/ (stage artifacts while it runs) and out/ (what it serves)."""
        return self.root / "comparisons" / str(comparison_id)

    def remove_comparison(self, comparison_id: uuid.UUID) -> None:
        self._remove(self.comparison_dir(comparison_id))

    def encoder_weights(self, encoder_id: uuid.UUID) -> Path:
        """A registered encoder's safetensors file."""
        return self.root / "encoders" / f"{encoder_id}.safetensors"

    def new_staging_dir(self) -> Path:
        """A fresh folder for an upload in progress (on the same filesystem, so the final move is atomic)."""
        path = self.root / "tmp" / uuid.uuid4().hex
        private_dir(path.parent)
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)  # whatever the umask
        return path

    def publish_dataset(self, staged_images: Path, dataset_id: uuid.UUID) -> Path:
        """Make the staged files private (0600, folders 0700) and move the folder into place in one rename."""
        target = self.dataset_images(dataset_id)
        private_tree(staged_images)
        private_dir(target.parent)
        os.replace(staged_images, target)
        return target

    def remove_dataset(self, dataset_id: uuid.UUID) -> None:
        self._remove(self.root / "datasets" / str(dataset_id))

    def remove_audit(self, audit_id: uuid.UUID) -> None:
        self._remove(self.audit_workdir(audit_id))

    def remove_tree(self, path: Path) -> None:
        self._remove(path)

    def _remove(self, path: Path) -> None:
        """Rename aside first (readers never see half a folder), then delete."""
        if not path.exists():
            return
        trash = self.root / "tmp" / f"trash-{uuid.uuid4().hex}"
        try:
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, trash)
        except OSError:
            trash = path
        shutil.rmtree(trash, ignore_errors=True)

    def check_writable(self) -> None:
        """Raise OSError unless a file can be written and removed under the root."""
        self.ensure()
        probe = self.root / "tmp" / f".probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
