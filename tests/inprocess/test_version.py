"""One version everywhere (issue 20): `synthaudit --version`, GET /healthz and the OpenAPI document all carry
the installed package's version from its metadata."""

from __future__ import annotations

from importlib.metadata import version

import pytest
from inprocess_app import InProcess

from synthaudit.app.cli import main


def test_the_cli_the_health_probe_and_openapi_state_the_package_version(inproc: InProcess, capsys) -> None:  # type: ignore[no-untyped-def]
    expected = version("synthaudit")
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"synthaudit {expected}"
    health = inproc.client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok", "version": expected}
    assert inproc.client.get("/openapi.json").json()["info"]["version"] == expected
