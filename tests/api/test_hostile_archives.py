"""Hostile archives and DICOM files against a real embedded server (uvicorn, SQLite) over HTTP.

Each upload is a few hundred KB to a few MB on the wire and hundreds of MiB to GiB once unpacked the
naive way. Each must get a 4xx problem+json (or, for a bad member of an otherwise good archive, a
`rejected` entry in a 201), and raise the server process's peak memory by less than 256 MiB (its
VmHWM, reset before each upload). Then the limits that span a request: one budget of archive members
and unpacked bytes per request, and a per-tenant storage quota that refuses an upload with a 413 and
loses nothing stored. The inputs are built by `hostile_inputs`, byte by byte, by these tests.
"""

from __future__ import annotations

import io
import lzma
import tarfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from hostile_inputs import (
    MIB,
    corrupt_deflate_member,
    corrupt_lzma_member,
    deflated_dicom,
    directory_flood_tar_gz,
    four_d_nifti,
    gzip_bomb_nifti,
    huge_datatype_nifti,
    long_header_tar_gz,
    lying_nifti,
    lying_zip,
    rle_multiframe_dicom,
    stored_member,
    truncated_nifti,
    zip_of_raw,
)
from PIL import Image

PROBLEM = "application/problem+json"
MEMORY_BOUND_MIB = 256


def png(seed: int = 0, size: int = 16) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (size, size), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def upload(client: httpx.Client, files: list[tuple[str, bytes]], role: str = "real") -> httpx.Response:
    return client.post(
        "/v1/datasets",
        data={"role": role},
        files=[("files", (name, io.BytesIO(data), "application/octet-stream")) for name, data in files],
    )


def problem(response: httpx.Response, *statuses: int) -> dict:
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith(PROBLEM), response.headers["content-type"]
    body = response.json()
    assert body["status"] == response.status_code and body["title"] and "detail" in body
    return body


def reasons(body: dict) -> dict[str, str]:
    return {r["name"]: r["reason"] for r in body["rejected"]}


@pytest.fixture(scope="module")
def server(proc_tools, tmp_path_factory) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """The embedded default with its default archive limits (only the request body may be larger, for
    the 51 MB lying zip): key-less on loopback."""
    home = tmp_path_factory.mktemp("hostile-embedded")
    env = proc_tools.clean_env(SYNTHAUDIT_HOME=str(home), MAX_UPLOAD_BYTES=str(128 * MIB))
    server = proc_tools.start_server(env, home / "api.log", home / "storage")
    yield server
    server.proc.stop()


@pytest.fixture()
def client(server) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=server.url, timeout=180.0) as c:
        yield c


@pytest.fixture()
def measured(server, proc_tools, client) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """The server's peak memory rise over the test (asserted below MEMORY_BOUND_MIB), and its health after."""
    with proc_tools.memory_rise(server.proc.popen.pid) as rise:
        yield rise
    assert rise.mib < MEMORY_BOUND_MIB, f"the server's peak memory rose by {rise.mib:.0f} MiB"
    assert server.proc.popen.poll() is None, server.proc.tail()
    assert client.get("/readyz").status_code == 200


# --- the hostile uploads ----------------------------------------------------------------------------


@pytest.mark.parametrize("typeflag", [b"L", b"x"], ids=["gnu-long-name", "pax"])
def test_a_tar_whose_first_header_declares_512_mib_is_refused_unread(client, measured, typeflag) -> None:  # type: ignore[no-untyped-def]
    """#2: tarfile read the long-name / PAX data whole (+1 GiB for this 0.5 MB upload)."""
    data = long_header_tar_gz(typeflag, 512 * MIB)
    assert len(data) < 600_000
    body = problem(upload(client, [("long.tar.gz", data)]), 422)
    assert "extension header of 536870912 bytes" in reasons(body)["long.tar.gz"]


def test_a_deflated_dicom_is_refused_before_it_is_inflated(client, measured) -> None:  # type: ignore[no-untyped-def]
    """#3: pydicom inflated the whole data set (512 MiB of pixel data here) even with stop_before_pixels."""
    data = deflated_dicom(512 * MIB)
    assert len(data) < 600_000
    body = problem(upload(client, [("deflated.dcm", data)]), 422)
    assert "deflated DICOM" in reasons(body)["deflated.dcm"]


@pytest.mark.parametrize("preamble", [True, False], ids=["with-DICM", "force-read"])
def test_the_dicom_frames_guard_holds_with_and_without_the_preamble(client, measured, preamble) -> None:  # type: ignore[no-untyped-def]
    """#4: 2000 x 2000 x 20 frames (80 M pixels, past the 64 M limit) in a 1.2 MB RLE file; without the
    DICM preamble the old guard was skipped and the decoder decoded all 20 frames."""
    body = problem(upload(client, [("frames.dcm", rle_multiframe_dicom(2000, 2000, 20, preamble))]), 422)
    assert reasons(body)["frames.dcm"] == "image too large (2000x2000 pixels x 20 frame(s); limit 64000000)"


def test_a_zip_whose_end_record_lies_about_its_entries_is_counted_while_parsed(client, measured) -> None:  # type: ignore[no-untyped-def]
    """#5: 1,000,000 directory entries behind an end record declaring 1 (zipfile built every entry: +430 MiB);
    the member budget (MAX_ARCHIVE_MEMBERS, 200,000) stops the count."""
    body = problem(upload(client, [("lying.zip", lying_zip(1_000_000, declared=1))]), 422)
    why = reasons(body)
    assert why["lying.zip"] == "more than 200000 archive members in the upload; the rest was skipped"
    assert len(body["rejected"]) == 1002  # 1000 one by one, the archive's reason, then a count
    assert body["rejected"][-1] == {"name": "(199000 more)", "reason": "199000 more files rejected"}


def test_a_million_tar_directory_headers_are_counted_and_not_kept(client, measured) -> None:  # type: ignore[no-untyped-def]
    """#6: directories were skipped before counting and tarfile kept every header (+380 MiB, 40 s)."""
    data = directory_flood_tar_gz(1_000_000)
    assert len(data) < 3 * MIB
    body = problem(upload(client, [("dirs.tar.gz", data)]), 422)
    assert (
        reasons(body)["dirs.tar.gz"] == "more than 200000 archive members in the upload; the rest was skipped"
    )


def test_corrupt_deflate_and_lzma_members_are_rejected_members(client, measured) -> None:  # type: ignore[no-untyped-def]
    """#14: zlib.error / LZMAError from a member's data gave a 500. A bad member of a good archive is a
    `rejected` entry of a 201; an archive with nothing else is a 422."""
    good = stored_member("good.png", png(1))
    archive = zip_of_raw([good, corrupt_deflate_member(), corrupt_lzma_member()])
    response = upload(client, [("mixed.zip", archive)])
    assert response.status_code == 201, response.text[:500]
    assert response.json()["image_count"] == 1
    assert reasons(response.json()) == {
        "mixed.zip:bad-deflate.png": "corrupt archive member",
        "mixed.zip:bad-lzma.png": "corrupt archive member",
    }
    body = problem(upload(client, [("bad.zip", zip_of_raw([corrupt_deflate_member()]))]), 422)
    assert reasons(body) == {"bad.zip:bad-deflate.png": "corrupt archive member"}


def test_a_corrupt_xz_tar_keeps_what_was_read(client, measured) -> None:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i in range(3):
            data = png(i, size=64)
            info = tarfile.TarInfo(f"p{i}.png")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    packed = bytearray(lzma.compress(buf.getvalue()))
    packed[len(packed) // 2 :] = b"\xff" * (len(packed) - len(packed) // 2)  # the xz stream breaks halfway
    response = upload(client, [("cut.tar.xz", bytes(packed))])
    if response.status_code == 201:
        assert response.json()["image_count"] < 3
    else:
        problem(response, 422)
    assert "truncated or corrupt" in reasons(response.json())["cut.tar.xz"]


def test_the_api_reads_the_archive_types_the_cli_reads(client) -> None:  # type: ignore[no-untyped-def]
    """One reader: .tar.bz2 and .tar.xz were read by the CLI and refused by the API."""
    for suffix, mode in ((".tar.bz2", "w:bz2"), (".tar.xz", "w:xz"), (".tgz", "w:gz"), (".tar", "w")):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode=mode) as tf:
            data = png(7)
            info = tarfile.TarInfo("inner/a.png")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        response = upload(client, [(f"set{suffix}", buf.getvalue())])
        assert response.status_code == 201, (suffix, response.text[:300])
        assert response.json()["image_count"] == 1 and response.json()["rejected"] == []


NIFTI_CASES = {
    "lying.nii.gz": (lying_nifti, "volume too large (30000x30000x30000 voxels; limit 64000000)"),
    "complex.nii": (huge_datatype_nifti, "NIfTI datatype complex256 is not accepted (real scalars only)"),
    "cut.nii": (
        truncated_nifti,
        "truncated NIfTI file (the header needs 524640 bytes, the file holds 102752)",
    ),
    "frames.nii.gz": (
        four_d_nifti,
        "4D NIfTI (16 x 16 x 16 x 50: 50 frames) is not accepted; store each frame as a 3D volume",
    ),
    "bomb.nii.gz": (gzip_bomb_nifti, "no slice of the volume has 5% of its pixels above the background"),
}


@pytest.mark.parametrize("name", list(NIFTI_CASES))
def test_hostile_nifti_volumes_are_refused_before_their_voxels_are_read(client, measured, name) -> None:  # type: ignore[no-untyped-def]
    """Issue 21: a NIfTI header is an allocation request (54 TB of int16 here, complex256, 512 KiB in
    front of 100 KiB, 50 frames, a 1 MB .nii.gz inflating to 1 GiB of zeros): each a 422 alone, a
    `rejected` entry beside a usable image, and the stored dataset is untouched."""
    build, reason = NIFTI_CASES[name]
    data = build()
    assert len(data) < 2 * MIB
    body = problem(upload(client, [(name, data)]), 422)
    assert reasons(body) == {name: reason}
    kept = upload(client, [("good.png", png(3)), (name, data)])
    assert kept.status_code == 201, kept.text[:300]
    assert kept.json()["image_count"] == 1 and reasons(kept.json()) == {name: reason}
    listing = client.get(f"/v1/datasets/{kept.json()['id']}/images")
    assert listing.status_code == 200 and [i["id"] for i in listing.json()["items"]] == ["good"]


# --- limits per request and per tenant ----------------------------------------------------------------

SMALL = {
    "MAX_IMAGE_BYTES": str(2 * MIB),
    "MAX_ARCHIVE_MEMBERS": "10",
    "MAX_EXTRACTED_BYTES": str(3 * MIB),
    "TENANT_STORAGE_QUOTA_BYTES": str(5 * MIB),
}


@pytest.fixture(scope="module")
def small(proc_tools, tmp_path_factory) -> Iterator[tuple[object, dict[str, str]]]:  # type: ignore[no-untyped-def]
    """An embedded server with small per-request limits and a 5 MiB quota per tenant; keys required
    (for several tenants), with keys of four tenants."""
    home = tmp_path_factory.mktemp("small-limits")
    env = proc_tools.clean_env(SYNTHAUDIT_HOME=str(home), AUTH_REQUIRED="true", **SMALL)
    server = proc_tools.start_server(env, home / "api.log", home / "storage")
    database = f"sqlite:///{(home / 'synthaudit.db').resolve()}"
    names = ("members", "bytes", "quota", "other")
    keys = {n: proc_tools.create_api_key(database, f"{n}-{uuid.uuid4().hex[:6]}") for n in names}
    yield server, keys
    server.proc.stop()


def _as(small, tenant: str) -> httpx.Client:  # type: ignore[no-untyped-def]
    server, keys = small
    return httpx.Client(
        base_url=server.url, timeout=120.0, headers={"Authorization": f"Bearer {keys[tenant]}"}
    )


def zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_the_member_limit_spans_the_request(small) -> None:  # type: ignore[no-untyped-def]
    """#7: two archives of 6 members each, MAX_ARCHIVE_MEMBERS=10: each passed on its own before."""
    first = zip_of({f"a{i}.png": png(i) for i in range(6)})
    second = zip_of({f"b{i}.png": png(10 + i) for i in range(6)})
    with _as(small, "members") as client:
        response = upload(client, [("first.zip", first), ("second.zip", second)])
    assert response.status_code == 201, response.text[:300]
    assert response.json()["image_count"] == 10
    assert reasons(response.json()) == {
        "second.zip": "more than 10 archive members in the upload; the rest was skipped"
    }


def test_the_unpacked_bytes_limit_spans_the_request(small) -> None:  # type: ignore[no-untyped-def]
    """#7: two archives of 4 x 0.5 MiB each, MAX_EXTRACTED_BYTES=3 MiB: each passed on its own before."""
    first = zip_of({f"a{i}.png": png(i, size=720) for i in range(4)})
    second = zip_of({f"b{i}.png": png(10 + i, size=720) for i in range(4)})
    with _as(small, "bytes") as client:
        response = upload(client, [("first.zip", first), ("second.zip", second)])
    assert response.status_code == 201, response.text[:300]
    assert 4 < response.json()["image_count"] < 8
    assert reasons(response.json()) == {
        "second.zip": f"the upload unpacks to more than {3 * MIB} bytes; the rest was skipped"
    }


def test_the_tenant_storage_quota_refuses_an_upload_and_loses_nothing(small) -> None:  # type: ignore[no-untyped-def]
    """#7: TENANT_STORAGE_QUOTA_BYTES=5 MiB: 4 MiB stored, 2 MiB more is a 413 problem+json; the stored
    dataset is intact, another tenant is not affected, and deleting frees the quota."""
    images = [(f"q{i}.png", png(i, size=1024)) for i in range(6)]  # ~1 MiB each
    server, _keys = small
    with _as(small, "quota") as client:
        first = upload(client, images[:4])
        assert first.status_code == 201, first.text[:300]
        stored = client.get(f"/v1/datasets/{first.json()['id']}/images").json()
        before = sorted(Path(server.storage).rglob("*.png"))
        body = problem(upload(client, images[4:]), 413)
        assert body["type"] == "urn:synthaudit:problem:storage-quota-exceeded"
        assert "TENANT_STORAGE_QUOTA_BYTES" in body["detail"] and body["quota_bytes"] == 5 * MIB
        assert client.get(f"/v1/datasets/{first.json()['id']}/images").json() == stored
        assert sorted(Path(server.storage).rglob("*.png")) == before  # nothing stored, nothing lost
        assert not any((Path(server.storage) / "tmp").iterdir())  # and no staging left behind
        with _as(small, "other") as other:
            assert upload(other, images[4:]).status_code == 201  # another tenant has its own quota
        assert client.delete(f"/v1/datasets/{first.json()['id']}").status_code == 204
        assert upload(client, images[4:]).status_code == 201
