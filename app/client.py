"""A small Python client of the synthaudit API (standard library only: urllib, streamed multipart uploads).

from synthaudit.app.client import Client
api = Client("http://127.0.0.1:8000", api_key="sa_…")
real = api.upload_dataset("real", ["scans/"])
gen = api.upload_dataset("generated", ["samples.zip"])
held_out = api.upload_dataset("reference", ["hold-out/"])   # optional: known not used
audit = api.create_audit(real["id"], gen["id"], reference_dataset_id=held_out["id"], config={"fdr": 0.1})
audit = api.wait(audit["id"])
open("report.html", "wb").write(api.report(audit["id"]))

Redirects are followed only within the base URL's origin (scheme, host and port), so the API key is
never sent to another server; a redirect elsewhere is an ApiError naming where it pointed.
"""

from __future__ import annotations

import json
import mimetypes
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

FINAL = ("succeeded", "failed", "cancelled")
CHUNK = 1024 * 1024


class ApiError(Exception):
    """An error answer of the API (problem+json), or no answer at all."""

    def __init__(self, status: int, detail: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"HTTP {status}: {detail}" if status else detail)
        self.status, self.detail, self.body = status, detail, body or {}


def _files_of(paths: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """(name sent, local path): folders are walked (relative names keep their sub-folders)."""
    out: list[tuple[str, Path]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                rel = file.relative_to(path)
                if not any(part.startswith(".") for part in rel.parts):
                    out.append((rel.as_posix(), file))
        elif path.is_file():
            out.append((path.name, path))
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    if not out:
        raise ValueError("nothing to upload")
    return out


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, with the scheme's default port filled in."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:  # a port that is not a number
        port = None
    return scheme, (parts.hostname or "").lower(), port


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to the same origin (and send the key there again); refuse any other: a
    redirect to another host, port or scheme (http: included) must not carry the API key."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        target = urllib.parse.urljoin(req.full_url, newurl)
        if _origin(target) != _origin(req.full_url):
            fp.close()
            scheme, host, port = _origin(target)
            raise ApiError(
                code,
                f"the server redirected to another origin ({scheme}://{host}:{port}); not followed, "
                "so the API key is not sent there (use that address as the base URL if you trust it)",
            )
        new = super().redirect_request(req, fp, code, msg, headers, target)
        key = req.get_header("Authorization")
        if new is not None and key is not None:
            new.add_unredirected_header("Authorization", key)
        return new


_OPENER = urllib.request.build_opener(_SameOriginRedirects)


class _Multipart:
    """A multipart/form-data body streamed from disk, with its exact length known up front."""

    def __init__(self, fields: dict[str, str], files: list[tuple[str, Path]]) -> None:
        self.boundary = f"synthaudit-{uuid.uuid4().hex}"
        self.parts: list[bytes | Path] = []
        for name, value in fields.items():
            self.parts.append(self._head(f'name="{name}"') + value.encode() + b"\r\n")
        for sent_name, path in files:
            quoted = sent_name.replace('"', "%22").replace("\r", "").replace("\n", "")
            ctype = mimetypes.guess_type(sent_name)[0] or "application/octet-stream"
            self.parts.append(self._head(f'name="files"; filename="{quoted}"', ctype))
            self.parts.append(path)
            self.parts.append(b"\r\n")
        self.parts.append(f"--{self.boundary}--\r\n".encode())

    def _head(self, disposition: str, ctype: str | None = None) -> bytes:
        lines = [f"--{self.boundary}", f"Content-Disposition: form-data; {disposition}"]
        if ctype:
            lines.append(f"Content-Type: {ctype}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in self.parts)

    def __iter__(self) -> Iterator[bytes]:
        for part in self.parts:
            if isinstance(part, Path):
                with open(part, "rb") as fh:
                    while chunk := fh.read(CHUNK):
                        yield chunk
            else:
                yield part


class Client:
    """The synthaudit REST API: datasets, audits, results, reports, encoders."""

    def __init__(
        self, base_url: str | None = None, api_key: str | None = None, timeout: float = 300.0
    ) -> None:
        self.base_url = (base_url or os.environ.get("SYNTHAUDIT_URL") or "http://127.0.0.1:8000").rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("SYNTHAUDIT_API_KEY")
        self.timeout = timeout

    # --- transport --------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, Any] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP exchange; raises ApiError for 4xx/5xx answers and unreachable servers."""
        url = self.base_url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        all_headers = {"Accept": "application/json, */*", **(headers or {})}
        if json_body is not None:
            data = json.dumps(json_body).encode()
            all_headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=all_headers, method=method)
        if self.api_key:  # never copied onto a redirect by urllib; _SameOriginRedirects re-adds it
            request.add_unredirected_header("Authorization", f"Bearer {self.api_key}")
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
            exc.close()
            try:
                problem = json.loads(body)
            except ValueError:
                problem = {}
            detail = problem.get("detail") or problem.get("title") or body[:200].decode(errors="replace")
            raise ApiError(exc.code, str(detail), problem) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiError(0, f"cannot reach {self.base_url}: {getattr(exc, 'reason', exc)}") from None

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        _, _, body = self.request(method, path, **kwargs)
        return json.loads(body) if body else None

    # --- datasets ---------------------------------------------------------------------------------

    def upload_dataset(
        self, role: str, paths: Sequence[str | Path], name: str | None = None
    ) -> dict[str, Any]:
        """Upload files, folders (walked) and archives as one dataset; returns the dataset."""
        body = _Multipart({"role": role, **({"name": name} if name else {})}, _files_of(paths))
        return self._json(
            "POST",
            "/v1/datasets",
            data=iter(body),
            headers={"Content-Type": body.content_type, "Content-Length": str(len(body))},
        )

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/datasets/{dataset_id}")

    # --- audits -----------------------------------------------------------------------------------

    def create_audit(
        self,
        real_dataset_id: str,
        generated_dataset_id: str,
        *,
        config: dict[str, Any] | None = None,
        labels: dict[str, int] | None = None,
        encoder_id: str | None = None,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        reference_dataset_id: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Queue an audit (an idempotency key is generated, so a retried call never starts two);
        `reference_dataset_id`: a dataset uploaded with role `reference` (known-not-used images)."""
        body: dict[str, Any] = {
            "real_dataset_id": real_dataset_id,
            "generated_dataset_id": generated_dataset_id,
            "config": config or {},
            **extra,
        }
        optional = {
            "labels": labels,
            "encoder_id": encoder_id,
            "webhook_url": webhook_url,
            "reference_dataset_id": reference_dataset_id,
        }
        for key, value in optional.items():
            if value is not None:
                body[key] = value
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        return self._json("POST", "/v1/audits", json_body=body, headers=headers)

    def audit(self, audit_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/audits/{audit_id}")

    def list_audits(
        self,
        status: str | None = None,
        *,
        created_after: str | None = None,
        created_before: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of this key's audits, newest first: `{"items": [...], "next_cursor": ...}`; pass
        `next_cursor` back as `cursor` for the next page (None on the last). Times are ISO 8601."""
        query = {
            "status": status,
            "created_after": created_after,
            "created_before": created_before,
            "limit": limit,
            "cursor": cursor,
        }
        chosen = {k: v for k, v in query.items() if v is not None}
        return self._json("GET", "/v1/audits", query=chosen or None)

    def iter_audits(self, status: str | None = None, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every audit of this key (optionally in one status), newest first, page after page."""
        cursor = filters.pop("cursor", None)
        while True:
            page = self.list_audits(status, cursor=cursor, **filters)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def wait(self, audit_id: str, timeout: float | None = None, poll_s: float = 2.0) -> dict[str, Any]:
        """Poll until the audit succeeded, failed or was cancelled (TimeoutError after `timeout` s)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            audit = self.audit(audit_id)
            if audit["status"] in FINAL:
                return audit
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"audit {audit_id} still {audit['status']} after {timeout} s")
            time.sleep(poll_s)

    def results_csv(self, audit_id: str, fmt: str = "synthaudit") -> bytes:
        return self.request("GET", f"/v1/audits/{audit_id}/results.csv", query={"format": fmt})[2]

    def patients_csv(self, audit_id: str, aggregation: str | None = None) -> bytes:
        query = {"aggregation": aggregation} if aggregation else None
        return self.request("GET", f"/v1/audits/{audit_id}/patients.csv", query=query)[2]

    def metrics(self, audit_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/audits/{audit_id}/metrics")

    def report(self, audit_id: str) -> bytes:
        """The HTML report (bytes, UTF-8)."""
        return self.request("GET", f"/v1/audits/{audit_id}/report")[2]

    def cancel(self, audit_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/audits/{audit_id}/cancel")

    def delete_audit(self, audit_id: str) -> None:
        self.request("DELETE", f"/v1/audits/{audit_id}")

    # --- encoders ---------------------------------------------------------------------------------

    def create_encoder(
        self, dataset_ids: Sequence[str], config: dict[str, Any] | None = None, name: str | None = None
    ) -> dict[str, Any]:
        body = {"dataset_ids": list(dataset_ids), "config": config or {}, **({"name": name} if name else {})}
        return self._json("POST", "/v1/encoders", json_body=body)

    def encoder(self, encoder_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/encoders/{encoder_id}")
