"""A corpus of hostile and broken uploads and requests, sent over HTTP to a real API (uvicorn + Postgres).

Each must be answered with a 4xx problem+json, or (when the upload as a whole is usable) with the bad
files listed in `rejected`; afterwards the service is intact (`/readyz` 200), nothing was written
outside its storage folder, and its memory stayed bounded (peak RSS checked at the end).
"""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import tarfile
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PROBLEM = "application/problem+json"
MIB = 1024 * 1024
LIMITS = {
    "MAX_UPLOAD_BYTES": str(64 * MIB),
    "MAX_FILES_PER_UPLOAD": "1000",
    "MAX_IMAGE_BYTES": str(4 * MIB),
    "MAX_EXTRACTED_BYTES": str(40 * MIB),
    "MAX_ARCHIVE_MEMBERS": "10000",
    "MAX_IMAGE_PIXELS": "4000000",
    "MAX_JSON_BYTES": str(64 * 1024),
}
TRIED: list[str] = []  # names of the cases sent (docs/reliability.md quotes the count)
PEAK_RSS_MIB: list[float] = []
ESCAPE = f"escape-{uuid.uuid4().hex[:8]}"  # the name every path-traversal attempt writes


def png(seed: int = 0, size: int = 16) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (size, size), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def hostile_api(pg_url, redis_url, tenant_keys, proc_tools, tmp_path_factory) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """An API with small limits (so bombs and floods are cheap to send), on the test Postgres."""
    sandbox = tmp_path_factory.mktemp("hostile")
    home = sandbox / "home"
    env = proc_tools.clean_env(
        DATABASE_URL=pg_url,
        CELERY_BROKER_URL=redis_url,
        CELERY_QUEUE=f"synthaudit-hostile-{uuid.uuid4().hex[:8]}",
        SYNTHAUDIT_HOME=str(home),
        STORAGE_DIR=str(home / "storage"),
        **LIMITS,
    )
    server = proc_tools.start_server(env, sandbox / "api.log", home / "storage")
    server.headers = proc_tools.bearer(tenant_keys["a"])
    server.sandbox = sandbox  # type: ignore[attr-defined]
    yield server
    server.proc.stop()
    if os.environ.get("SYNTHAUDIT_BAD_INPUT_REPORT"):
        report = {"cases": TRIED, "api_peak_rss_mib": PEAK_RSS_MIB[-1] if PEAK_RSS_MIB else None}
        Path(os.environ["SYNTHAUDIT_BAD_INPUT_REPORT"]).write_text(json.dumps(report, indent=1))


@pytest.fixture()
def hc(hostile_api) -> Iterator[object]:  # type: ignore[no-untyped-def]
    import httpx

    with httpx.Client(base_url=hostile_api.url, timeout=120.0, headers=hostile_api.headers) as client:
        yield client


@pytest.fixture(autouse=True)
def _service_stays_intact(request, hostile_api) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """After every case: still ready, still alive, nothing written outside storage."""
    yield
    import httpx

    assert hostile_api.proc.popen.poll() is None, hostile_api.proc.tail()
    assert httpx.get(f"{hostile_api.url}/readyz", timeout=10).status_code == 200
    sandbox: Path = hostile_api.sandbox
    storage = sandbox / "home" / "storage"
    for path in sandbox.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert path.name == "api.log" or storage in path.parents, f"written outside storage: {path}"
        assert ESCAPE not in path.name or (storage / "datasets") in path.parents, path
    for target in (
        Path("/") / f"{ESCAPE}.png",
        Path("/tmp") / f"{ESCAPE}.png",
        Path.home() / f"{ESCAPE}.png",
    ):
        assert not target.exists()
    TRIED.append(request.node.name)


def upload(client, files: list[tuple[str, bytes]], role: str = "real", field: str = "files"):  # type: ignore[no-untyped-def]
    return client.post(
        "/v1/datasets",
        data={"role": role},
        files=[(field, (name, io.BytesIO(data), "application/octet-stream")) for name, data in files],
    )


def problem(response, *statuses: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith(PROBLEM), response.headers["content-type"]
    body = response.json()
    assert body["status"] == response.status_code and body["title"] and "detail" in body
    return body


def accepted_with_rejections(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 201, response.text[:500]
    return {r["name"]: r["reason"] for r in response.json()["rejected"]}


# --- paths ------------------------------------------------------------------------------------------


def test_zip_slip(hc) -> None:
    evil = {
        f"../../{ESCAPE}.png": png(1),
        f"/tmp/{ESCAPE}.png": png(2),
        f"C:/{ESCAPE}.png": png(3),
        f"a/../../../{ESCAPE}.png": png(4),
        f"..\\..\\{ESCAPE}.png": png(5),
        "good.png": png(6),
    }
    rejected = accepted_with_rejections(upload(hc, [("slip.zip", zip_of(evil))]))
    assert sum(reason == "unsafe path in archive" for reason in rejected.values()) == 5


def test_tar_slip_links_and_device_files(hc) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, kind, target in [
            (f"../{ESCAPE}.png", tarfile.REGTYPE, ""),
            (f"/{ESCAPE}.png", tarfile.REGTYPE, ""),
            ("link", tarfile.SYMTYPE, "/tmp"),
            (f"link/{ESCAPE}.png", tarfile.REGTYPE, ""),  # through the (refused) symlink
            ("passwd.png", tarfile.SYMTYPE, "/etc/passwd"),
            ("hard.png", tarfile.LNKTYPE, "/etc/passwd"),
            ("tty.png", tarfile.CHRTYPE, ""),
            ("fifo.png", tarfile.FIFOTYPE, ""),
            ("good.png", tarfile.REGTYPE, ""),
        ]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            data = png(len(name)) if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    rejected = accepted_with_rejections(upload(hc, [("slip.tar.gz", buf.getvalue())]))
    assert sum(r == "unsafe path in archive" for r in rejected.values()) == 2
    assert sum(r == "link or special file in archive" for r in rejected.values()) == 5


def test_symlink_archive(hc) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, target in (("passwd.png", "/etc/passwd"), ("up.png", "../../etc/shadow")):
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
        dev = zipfile.ZipInfo("dev.png")
        dev.external_attr = (stat.S_IFCHR | 0o666) << 16
        zf.writestr(dev, b"")
    body = problem(upload(hc, [("links.zip", buf.getvalue())]), 422)
    assert {r["reason"] for r in body["rejected"]} == {"link or special file in archive"}


def test_unusable_file_names(hc) -> None:
    response = upload(
        hc,
        [
            ("nul\x00byte.png", png(1)),
            ("new\nline.png", png(2)),
            ("tab\tname.png", png(3)),
            ("x" * 300 + ".png", png(4)),
            (f"../../{ESCAPE}.png", png(5)),  # a part's file name is reduced to its base name
            ("ok.png", png(6)),
        ],
    )
    rejected = accepted_with_rejections(response)
    assert any(name.startswith("xxxx") and "unusable" in reason for name, reason in rejected.items())
    stored = hc.get(f"/v1/datasets/{response.json()['id']}/images").json()["items"]
    names = [i["file_name"] for i in stored] + list(rejected)
    assert "ok.png" in names and f"{ESCAPE}.png" in names
    assert not any(ch in name for name in names for ch in "\x00\n\r\t"), names


# --- bombs ------------------------------------------------------------------------------------------


def test_zip_bomb_declared_size(hc) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("bomb.png", "w", force_zip64=True) as member:
            chunk = b"\0" * MIB
            for _ in range(200):  # 200 MiB of zeros, ~200 KiB compressed
                member.write(chunk)
        zf.writestr("good.png", png(1))
    assert len(buf.getvalue()) < 2 * MIB
    rejected = accepted_with_rejections(upload(hc, [("bomb.zip", buf.getvalue())]))
    assert "larger than" in rejected["bomb.zip:bomb.png"]


def test_zip_bomb_with_a_lying_header(hc) -> None:
    """The headers claim 1 KiB, the data inflates to 64 MiB: reading stops at the claimed size."""
    data = b"\0" * (64 * MIB)
    archive = bytearray(zip_of({"liar.png": data, "good.png": png(1)}))
    real_size = struct.pack("<I", len(data))
    lie = struct.pack("<I", 1024)
    assert archive.count(real_size) == 2  # local header and central directory entry
    archive = archive.replace(real_size, lie)
    rejected = accepted_with_rejections(upload(hc, [("liar.zip", bytes(archive))]))
    assert "corrupt" in rejected["liar.zip:liar.png"] or "not a supported" in rejected["liar.zip:liar.png"]


def test_many_zip_entries_stop_at_the_member_limit(hc) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(
            100_001
        ):  # 10x MAX_ARCHIVE_MEMBERS, empty entries: counted while the directory is read
            zf.writestr(f"{i}", b"")
    body = problem(upload(hc, [("huge-directory.zip", buf.getvalue())]), 413, 422)
    reasons = {r["name"]: r["reason"] for r in body["rejected"]}
    assert (
        reasons["huge-directory.zip"] == "more than 10000 archive members in the upload; the rest was skipped"
    )


def test_gzip_bomb_in_a_tar(hc) -> None:
    class Zeros(io.RawIOBase):
        def __init__(self, n: int) -> None:
            self.left = n

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
            n = min(len(b), self.left)
            b[:n] = bytes(n)
            self.left -= n
            return n

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tf:
        info = tarfile.TarInfo("zeros.png")
        info.size = 400 * MIB
        tf.addfile(info, io.BufferedReader(Zeros(info.size), 4 * MIB))
    assert len(buf.getvalue()) < 4 * MIB
    body = problem(upload(hc, [("bomb.tar.gz", buf.getvalue())]), 422)
    reasons = {r["name"]: r["reason"] for r in body["rejected"]}
    assert (
        "unpacks to more than" in reasons["bomb.tar.gz"] or "larger than" in reasons["bomb.tar.gz:zeros.png"]
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def pixel_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height pixels (the data is a few compressed zeros)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1024))
        + _png_chunk(b"IEND", b"")
    )


def test_pixel_bombs(hc) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.Rows, ds.Columns = 60000, 60000
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = b"\0" * 64
    dicom = io.BytesIO()
    ds.save_as(dicom, enforce_file_format=True)
    rejected = accepted_with_rejections(
        upload(
            hc,
            [
                ("wide.png", pixel_bomb(100_000, 100_000)),  # 10^10 pixels: Pillow's own guard
                ("big.png", pixel_bomb(3_000, 3_000)),  # 9e6 > MAX_IMAGE_PIXELS (4e6)
                ("huge.dcm", dicom.getvalue()),
                ("ok.png", png(1)),
            ],
        )
    )
    assert set(rejected) == {"wide.png", "big.png", "huge.dcm"}
    assert all("too large" in reason for reason in rejected.values()), rejected


# --- broken files -----------------------------------------------------------------------------------


def test_truncated_corrupt_and_disguised_files(hc) -> None:
    good = png(1, size=64)
    jpeg = io.BytesIO()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(jpeg, format="JPEG")
    rejected = accepted_with_rejections(
        upload(
            hc,
            [
                ("truncated.png", good[: len(good) // 2]),
                ("flipped.png", good[:100] + bytes(b ^ 0xFF for b in good[100:200]) + good[200:]),
                ("text.png", b"this is not an image, whatever its name says\n" * 10),
                ("empty.png", b""),
                ("html.dcm", b"<html><body>not dicom</body></html>"),
                ("jpeg-named.png", jpeg.getvalue()),  # the content decides: accepted
                ("ok.png", good),
            ],
        )
    )
    assert set(rejected) == {"truncated.png", "flipped.png", "text.png", "empty.png", "html.dcm"}


def test_empty_archives_and_nothing_usable(hc) -> None:
    empty_tar = io.BytesIO()
    with tarfile.open(fileobj=empty_tar, mode="w:gz"):
        pass
    for files in (
        [("empty.zip", zip_of({}))],
        [("empty.tar.gz", empty_tar.getvalue())],
        [("not-a.zip", b"PK\x03\x04 but not really a zip")],
        [("notes.txt", b"hello")],
    ):
        body = problem(upload(hc, files), 422)
        assert "none of the uploaded files" in body["detail"]


def test_ten_thousand_tiny_files(hc) -> None:
    tiny = png(1, size=2)
    # As multipart parts: more than MAX_FILES_PER_UPLOAD (1000) is refused before anything is stored.
    problem(upload(hc, [(f"t{i}.png", tiny) for i in range(10_000)]), 400, 413)
    # In one archive: accepted, every file an image.
    response = upload(hc, [("tiny.zip", zip_of({f"t{i:05d}.png": tiny for i in range(10_000)}))])
    assert response.status_code == 201, response.text[:300]
    assert response.json()["image_count"] == 10_000 and response.json()["rejected"] == []


# --- malformed requests -----------------------------------------------------------------------------


def test_wrong_multipart_field_names_and_bodies(hc) -> None:
    problem(upload(hc, [("a.png", png(1))], field="file"), 422)
    problem(hc.post("/v1/datasets", data={"roles": "real"}, files=[("files", ("a.png", png(1)))]), 422)
    problem(hc.post("/v1/datasets", json={"role": "real"}), 422)
    problem(
        hc.post("/v1/datasets", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data"}),
        400,
        422,
    )
    problem(
        hc.post(
            "/v1/datasets", data={"role": "real", "name": "bad\x00name"}, files=[("files", ("a.png", png(1)))]
        ),
        422,
    )


def test_huge_and_hostile_json(hc) -> None:
    big = {"real_dataset_id": str(uuid.uuid4()), "generated_dataset_id": str(uuid.uuid4())}
    big["labels"] = {f"img{i:07d}": 1 for i in range(200_000)}  # ~4 MB
    problem(hc.post("/v1/audits", json=big), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies to the stream
        yield b'{"labels": {'
        for i in range(100_000):
            yield f'"img{i:07d}": 1, '.encode()
        yield b'"x": 1}}'

    problem(hc.post("/v1/audits", content=chunks(), headers={"content-type": "application/json"}), 413)
    problem(
        hc.post(
            "/v1/audits", content=b"[" * 30_000 + b"]" * 30_000, headers={"content-type": "application/json"}
        ),
        400,
        422,
    )
    problem(
        hc.post("/v1/audits", content=b"\xff\xfe not json", headers={"content-type": "application/json"}),
        400,
        422,
    )
    nul = {
        "real_dataset_id": str(uuid.uuid4()),
        "generated_dataset_id": str(uuid.uuid4()),
        "labels": {"a\x00": 1},
    }
    problem(hc.post("/v1/audits", json=nul), 422)
    problem(hc.post("/v1/audits", json={**nul, "labels": None, "config": {"mae_preset": "\x00"}}), 422)


def test_declared_oversize_upload_is_refused_before_reading(hostile_api) -> None:
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(hostile_api.url)
    token = hostile_api.headers["Authorization"]
    request = (
        f"POST /v1/datasets HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: {token}\r\n"
        f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {100 * MIB}\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(request + b"--x\r\n")  # a few bytes of the promised 100 MiB
        answer = sock.recv(65536).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413") and PROBLEM in answer, answer[:300]


def test_memory_stayed_bounded(hostile_api) -> None:
    """Runs last: the API process never held anything near the bombs' expanded sizes in memory."""
    status = Path(f"/proc/{hostile_api.proc.popen.pid}/status").read_text()
    peak_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
    PEAK_RSS_MIB.append(round(peak_kib / 1024, 1))
    assert peak_kib < 1_200_000, f"peak RSS {peak_kib / 1024:.0f} MiB"
