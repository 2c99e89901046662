"""Property-based fuzzing of the OpenAPI schema with schemathesis (Hypothesis strategies per operation):
valid and invalid requests for every operation, with random ids and with ids of real datasets and
audits, sent to a real API (uvicorn + Postgres) with a valid key. No answer may be a 5xx, and every
error must be problem+json. Derandomized (the same cases every run) and bounded to well under a minute.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

MAX_EXAMPLES = 10  # per operation, generation mode and id variant
BUDGET_S = 40.0


def content_type(response) -> str:  # type: ignore[no-untyped-def]
    value = {k.lower(): v for k, v in response.headers.items()}.get("content-type", "")
    return str(value[0] if isinstance(value, list) and value else value)


@pytest.fixture(scope="module")
def real_ids(api, membership_set, helpers) -> dict[str, str]:  # type: ignore[no-untyped-def]
    import httpx

    with httpx.Client(base_url=api.url, timeout=60.0, headers=api.headers) as client:
        real, generated = helpers.upload_set(client, membership_set[0])
        body = {"real_dataset_id": real, "generated_dataset_id": generated, "config": {"method": "pixels"}}
        audit = client.post("/v1/audits", json=body).json()["id"]
    return {"dataset_id": real, "audit_id": audit}


def test_no_server_errors(api, real_ids) -> None:  # type: ignore[no-untyped-def]
    import httpx

    document = httpx.get(f"{api.url}/openapi.json", timeout=30).json()
    loaded = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    calls = 0
    started = time.monotonic()

    def check(case) -> None:  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        response = case.call(base_url=api.url, headers=api.headers, timeout=30)
        where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}"
        if response.status_code >= 500:
            failures.append(where)
        elif response.status_code >= 400 and not content_type(response).startswith(
            "application/problem+json"
        ):
            failures.append("not problem+json: " + where)

    operations = [result.ok() for result in loaded.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        names = [p.name for p in operation.path_parameters]
        variants: list[dict[str, str] | None] = [None]
        if names and operation.method.upper() != "DELETE" and all(n in real_ids for n in names):
            variants.append({n: real_ids[n] for n in names})
        for mode in schemathesis.GenerationMode:
            for fixed in variants:
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed)

                @settings(
                    max_examples=MAX_EXAMPLES,
                    deadline=None,
                    derandomize=True,
                    database=None,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=strategy)
                def run(case) -> None:  # type: ignore[no-untyped-def]
                    check(case)

                try:
                    run()
                except Unsatisfiable:  # e.g. no way to make a parameterless GET invalid
                    continue
        if time.monotonic() - started > BUDGET_S:
            break
    elapsed = time.monotonic() - started
    if os.environ.get("SYNTHAUDIT_FUZZ_REPORT"):
        report = {"operations": len(operations), "requests": calls, "seconds": round(elapsed, 1)}
        Path(os.environ["SYNTHAUDIT_FUZZ_REPORT"]).write_text(json.dumps(report))
    assert not failures, "\n".join(failures[:20])
    assert elapsed < 60 + BUDGET_S  # the budget check is per operation
    assert calls >= 10 * len(operations) or elapsed > BUDGET_S
    assert httpx.get(f"{api.url}/readyz", timeout=10).status_code == 200


LISTINGS = ("/v1/datasets", "/v1/audits", "/v1/encoders")


def test_listings_no_server_errors(api) -> None:  # type: ignore[no-untyped-def]
    """The tenant listings' query parameters (limit, cursor, created_after/before, role/status) fuzzed on
    their own, with more cases than the budget above may leave them: no 5xx, every error problem+json."""
    import httpx

    document = httpx.get(f"{api.url}/openapi.json", timeout=30).json()
    loaded = schemathesis.openapi.from_dict(document)
    operations = [
        op
        for op in (result.ok() for result in loaded.get_all_operations())
        if op.method.upper() == "GET" and op.path in LISTINGS
    ]
    assert sorted(op.path for op in operations) == sorted(LISTINGS)
    failures: list[str] = []
    statuses: set[int] = set()
    for operation in operations:
        for mode in schemathesis.GenerationMode:

            @settings(
                max_examples=3 * MAX_EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case) -> None:  # type: ignore[no-untyped-def]
                response = case.call(base_url=api.url, headers=api.headers, timeout=30)
                statuses.add(response.status_code)
                where = (
                    f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}"
                )
                if response.status_code >= 500:
                    failures.append(where)
                elif response.status_code >= 400 and not content_type(response).startswith(
                    "application/problem+json"
                ):
                    failures.append("not problem+json: " + where)

            run()
    assert not failures, "\n".join(failures[:20])
    assert {200, 422} <= statuses
