"""app/client.py and `synthaudit remote`: upload, audit, wait, download results and report over HTTP."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest


def test_remote_submit_wait_results_report(embedded_api, membership_set, tmp_path: Path, capsys) -> None:
    from synthaudit.app.cli import main

    root, _ = membership_set
    remote = ["remote", "--url", embedded_api.url]
    inputs = ["--real", str(root / "real"), "--generated", str(root / "generated")]
    inputs += ["--labels", str(root / "labels.csv"), "--method", "pixels", "--image-size", "32"]
    out, report = tmp_path / "remote.csv", tmp_path / "remote.html"
    assert main([*remote, "submit", *inputs, "--wait", "--out", str(out), "--report", str(report)]) == 0
    printed = capsys.readouterr().out
    audit_id = printed.split("audit ", 1)[1].split()[0]
    assert "succeeded" in printed and report.read_text().startswith("<!DOCTYPE html>")
    lines = printed.splitlines()
    done = next(i for i, line in enumerate(lines) if line == f"audit {audit_id} succeeded")
    verdict = lines[done + 1]  # the verdict line, as the local CLI prints it (below)

    # The service's CSV is the local engine's CSV for the same inputs and config.
    local = tmp_path / "local.csv"
    assert main(["audit", *inputs, "--out", str(local)]) == 0
    assert out.read_text() == local.read_text()
    assert (
        verdict.startswith("evidence of training-data leakage")
        and verdict in capsys.readouterr().out.splitlines()
    )

    again = tmp_path / "again.csv"
    assert main([*remote, "results", audit_id, "--out", str(again), "--format", "imageclef"]) == 0
    assert again.read_text().count("\n") == 20 and not again.read_text().startswith("id,")
    assert main([*remote, "report", audit_id, "--out", str(tmp_path / "r.html")]) == 0
    assert main([*remote, "status", audit_id]) == 0 and '"succeeded"' in capsys.readouterr().out
    assert main([*remote, "status", str(uuid.uuid4())]) == 1
    assert "HTTP 404" in capsys.readouterr().err


def test_remote_submit_with_a_reference_set(
    embedded_api, membership_set, reference_set, tmp_path: Path, capsys
) -> None:
    """`--reference` uploads a reference dataset and audits against it, `--fdr` sets the target FDR: the
    CSV is the local CLI's for the same arguments."""
    from synthaudit.app.cli import main

    root, _ = membership_set
    inputs = ["--real", str(root / "real"), "--generated", str(root / "generated")]
    inputs += ["--reference", str(reference_set), "--fdr", "0.2", "--method", "pixels", "--image-size", "32"]
    out = tmp_path / "remote.csv"
    assert main(["remote", "--url", embedded_api.url, "submit", *inputs, "--wait", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "uploaded reference" in printed and "(40 images)" in printed
    audit_id = printed.split("audit ", 1)[1].split()[0]

    local = tmp_path / "local.csv"
    assert main(["audit", *inputs, "--out", str(local)]) == 0
    assert out.read_text() == local.read_text()

    from synthaudit.app.client import Client

    api = Client(embedded_api.url)
    audit, metrics = api.audit(audit_id), api.metrics(audit_id)
    assert audit["reference_dataset_id"] and api.dataset(audit["reference_dataset_id"])["role"] == "reference"
    assert metrics["calibrated"] is True and metrics["fdr"] == 0.2 and audit["config"]["fdr"] == 0.2


def test_client_api(embedded_api, membership_set) -> None:
    from synthaudit.app.client import ApiError, Client

    api = Client(embedded_api.url)
    root, truth = membership_set
    real = api.upload_dataset("real", [root / "real"], name="site A")
    generated = api.upload_dataset("generated", sorted((root / "generated").glob("*.png")))
    assert real["image_count"] == 20 and real["name"] == "site A"
    audit = api.create_audit(
        real["id"],
        generated["id"],
        config={"method": "pixels", "image_size": 32},
        idempotency_key="client-test-1",
    )
    assert (
        api.create_audit(
            real["id"],
            generated["id"],
            config={"method": "pixels", "image_size": 32},
            idempotency_key="client-test-1",
        )["id"]
        == audit["id"]
    )
    done = api.wait(audit["id"], timeout=120, poll_s=0.2)
    assert done["status"] == "succeeded"
    assert api.metrics(audit["id"])["counts"]["real"] == len(truth)
    with pytest.raises(ApiError) as err:
        api.patients_csv(audit["id"])
    assert err.value.status == 409
    with pytest.raises(ApiError) as err:
        Client("http://127.0.0.1:9").audit(audit["id"])
    assert err.value.status == 0 and "cannot reach" in str(err.value)
    api.delete_audit(audit["id"])


class _Recorder:
    """A loopback HTTP server in a thread that records the headers of every request it gets and answers
    with `answer(path)`: (status, headers, body)."""

    def __init__(self, answer) -> None:  # type: ignore[no-untyped-def]
        import http.server
        import threading

        recorder = self
        self.seen: list[tuple[str, dict[str, str]]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                status, headers, body = answer(self.path)
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_client_never_sends_the_key_to_another_origin() -> None:
    """Issue 14 #13: a redirect to another host:port (here another loopback port, and `localhost` for
    127.0.0.1) is refused and the other server never sees the key; a same-origin redirect still works."""
    import json

    from synthaudit.app.client import ApiError, Client

    elsewhere = _Recorder(lambda path: (200, {"Content-Type": "application/json"}, b'{"status": "queued"}'))
    targets = {
        "/v1/audits/other-port": f"http://127.0.0.1:{elsewhere.port}/v1/audits/x",
        "/v1/audits/other-host": None,  # filled below: localhost on the same port
        "/v1/audits/same": "/v1/audits/here",
    }

    def answer(path: str) -> tuple[int, dict[str, str], bytes]:
        if path in targets:
            return 302, {"Location": str(targets[path])}, b""
        return 200, {"Content-Type": "application/json"}, json.dumps({"status": "succeeded"}).encode()

    origin = _Recorder(answer)
    targets["/v1/audits/other-host"] = f"http://localhost:{origin.port}/v1/audits/y"
    try:
        api = Client(f"http://127.0.0.1:{origin.port}", api_key="sa_SECRET-KEY")
        for name in ("other-port", "other-host"):
            with pytest.raises(ApiError, match="another origin") as refused:
                api.audit(name)
            assert refused.value.status == 302
        assert elsewhere.seen == []  # not even a request without the key
        assert [p for p, _ in origin.seen] == ["/v1/audits/other-port", "/v1/audits/other-host"]
        assert api.audit("same") == {"status": "succeeded"}
        assert [p for p, _ in origin.seen[2:]] == ["/v1/audits/same", "/v1/audits/here"]
        assert all(h.get("authorization") == "Bearer sa_SECRET-KEY" for _, h in origin.seen)
    finally:
        origin.close()
        elsewhere.close()
