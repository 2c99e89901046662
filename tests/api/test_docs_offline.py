"""The interactive API docs work without internet (a hospital network): headless Chromium opens /docs
and /redoc of the embedded server with every other host blocked (a proxy that refuses all, and a
resolver that knows no name) and still renders the operations; the pages load their scripts and
styles from the service itself (the fastapi-offline package), never from a CDN."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from browser import CHROMIUM_FLAGS, chromium

# Hosts FastAPI's default docs pages use (scripts, styles, fonts, favicon, the validator badge).
CDN_HOSTS = (
    "cdn.jsdelivr.net",
    "unpkg.com",
    "fonts.googleapis.com",
    "fonts.gstatic.com",
    "validator.swagger.io",
    "fastapi.tiangolo.com",
)


class RefusingProxy:
    """An HTTP proxy on loopback that answers every request 502 and remembers which host it was for."""

    def __init__(self) -> None:
        self.hosts: list[str] = []
        hosts = self.hosts

        class Handler(BaseHTTPRequestHandler):
            def _refuse(self) -> None:
                hosts.append(self.path.split("//", 1)[-1].split("/", 1)[0].split(":", 1)[0])
                self.send_response(502)
                self.end_headers()

            do_GET = do_POST = do_HEAD = do_OPTIONS = do_CONNECT = _refuse

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def proxy() -> Iterator[RefusingProxy]:
    p = RefusingProxy()
    yield p
    p.stop()


def rendered(url: str, proxy: RefusingProxy) -> str:
    """The DOM of the page after its scripts ran, with no host but loopback reachable."""
    result = subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--proxy-server={proxy.url}",  # loopback bypasses it; everything else is refused
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.stdout, f"chromium printed no DOM (rc {result.returncode}):\n{result.stderr[-2000:]}"
    return result.stdout


def test_swagger_ui_renders_its_operations_offline(embedded_api, proxy) -> None:  # type: ignore[no-untyped-def]
    dom = rendered(f"{embedded_api.url}/docs", proxy)
    paths = set(re.findall(r'class="opblock-summary-path"[^>]*data-path="([^"]+)"', dom))
    assert {"/v1/datasets", "/v1/audits", "/v1/audits/{audit_id}", "/healthz"} <= paths, sorted(paths)[:10]
    assert not [h for h in proxy.hosts if h in CDN_HOSTS], proxy.hosts


def test_redoc_renders_its_operations_offline(embedded_api, proxy) -> None:  # type: ignore[no-untyped-def]
    dom = rendered(f"{embedded_api.url}/redoc", proxy)
    operations = set(re.findall(r"operation/([A-Za-z0-9_]+)", dom))
    assert {"create_dataset_v1_datasets_post", "create_audit_v1_audits_post"} <= operations, sorted(
        operations
    )
    assert not [h for h in proxy.hosts if h in CDN_HOSTS], proxy.hosts


def test_docs_pages_load_only_their_own_assets(embedded_client) -> None:  # type: ignore[no-untyped-def]
    for page in ("/docs", "/redoc"):
        html = embedded_client.get(page).text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), (page, urls)
        assert "https://" not in html and "http://" not in html, page
        for url in urls:
            asset = embedded_client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 1000, (url, asset.status_code)
