"""A small multi-patient DICOM membership set: patients with studies and series, some copied into the
generated set (all of a patient's images, or only one)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from synthetic_sets import random_image


def secondary_capture_dataset():  # -> pydicom Dataset
    """An empty Secondary Capture dataset with its file meta and fresh SOP instance UIDs."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    return ds


def dicom_file(pixels: np.ndarray, patient: str | None, study: str | None, series: str | None) -> bytes:
    """An uncompressed 8-bit MONOCHROME2 DICOM file with the given identifiers."""
    ds = secondary_capture_dataset()
    if patient is not None:
        ds.PatientID = patient
        ds.PatientName = f"Doe^{patient}"
    if study is not None:
        ds.StudyInstanceUID = study
    if series is not None:
        ds.SeriesInstanceUID = series
    ds.Modality = "OT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@dataclass
class DicomSet:
    root: Path
    patient_of: dict[str, str]  # image id -> raw PatientID
    series_of: dict[str, str]  # image id -> raw SeriesInstanceUID
    copied: set[str]  # image ids copied into the generated set


# patient -> (series per image, images copied into the generated set)
LAYOUT = {
    "PAT-0001-SECRET": ((0, 0, 1), (0, 1, 2)),  # every image copied: used
    "PAT-0002-SECRET": ((0, 0, 0), (0, 1, 2)),  # every image copied: used
    "PAT-0003-SECRET": ((0, 1, 2), (0,)),  # one image of three copied: used by `any`, not by `mean-score`
    "PAT-0004-SECRET": ((0, 0, 0), ()),
    "PAT-0005-SECRET": ((0, 0, 1), ()),
    "PAT-0006-SECRET": ((0, 1, 1), ()),
}


def make_dicom_set(root: Path, size: int = 32, n_fresh: int = 10, seed: int = 7) -> DicomSet:
    """root/real/img_XX.dcm (with PatientID, Study/Series UIDs), root/generated/*.png."""
    from pydicom.uid import generate_uid

    rng = np.random.default_rng(seed)
    (root / "real").mkdir(parents=True)
    (root / "generated").mkdir(parents=True)
    patient_of, series_of, copied, generated = {}, {}, set(), []
    n = 0
    for _p, (patient, (series_idx, copies)) in enumerate(LAYOUT.items()):
        study = generate_uid()
        series = [generate_uid() for _ in range(3)]
        for j, s in enumerate(series_idx):
            n += 1
            image_id = f"img_{n:02d}"
            pixels = random_image(rng, size)
            (root / "real" / f"{image_id}.dcm").write_bytes(dicom_file(pixels, patient, study, series[s]))
            patient_of[image_id], series_of[image_id] = patient, series[s]
            if j in copies:
                copied.add(image_id)
                generated.append(pixels)
    generated += [random_image(rng, size) for _ in range(n_fresh)]
    for k in rng.permutation(len(generated)):
        Image.fromarray(generated[k]).save(
            root / "generated" / f"g{len(list((root / 'generated').iterdir())):03d}.png"
        )
    return DicomSet(root, patient_of, series_of, copied)
