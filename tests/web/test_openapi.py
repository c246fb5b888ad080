"""The OpenAPI description covers every route, and real answers validate against it."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from jsonschema import Draft202012Validator

from periscope_ingest.config import load_settings
from periscope_ingest.service import Service
from periscope_ingest.storage.catalog import BroadcastRecord

ADMIN = "openapi-admin-token-0123456789"


@pytest.fixture
async def service(tmp_path: Path):
    settings = load_settings(
        host="127.0.0.1", rtmp_port=0, http_port=0, data_dir=tmp_path / "d", admin_token=ADMIN
    )
    svc = Service(settings)
    await svc.start()
    yield svc
    await svc.stop()


async def call(svc: Service, method: str, path: str, body: dict | None = None):
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as session,
        session.request(method, f"http://127.0.0.1:{svc.http_port}{path}", json=body) as r,
    ):
        return r.status, r.headers.get("Content-Type", ""), await r.read()


def validator(document: dict, operation: dict, status: int) -> Draft202012Validator:
    content = operation["responses"][str(status)]["content"]["application/json"]
    schema = {**content["schema"], "components": document["components"]}
    return Draft202012Validator(schema)


async def test_every_route_is_described(service: Service) -> None:
    _, _, body = await call(service, "GET", "/api/openapi.json")
    document = json.loads(body)
    Draft202012Validator.check_schema({"components": document["components"]})
    app = service._runner.app  # type: ignore[union-attr]
    described = {
        (method.upper(), path) for path, ops in document["paths"].items() for method in ops
    }
    routed = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS", "*"):
            continue
        routed.add((route.method, route.resource.canonical))
    assert routed - described == set(), "routes without a description"
    assert described - routed == set(), "descriptions of routes that do not exist"


async def test_answers_validate_against_the_description(service: Service) -> None:
    document = json.loads((await call(service, "GET", "/api/openapi.json"))[2])
    assert service.catalog is not None
    record = BroadcastRecord("AbCdEfGhIjKl", "main", "2026-01-01T00:00:00.000Z", "ended")
    service.catalog.put(record)
    service.layout.broadcast_dir("main", record.id).mkdir(parents=True)
    checked = 0
    requests = [
        ("GET", "/healthz", None, "/healthz"),
        ("GET", "/api/client", None, "/api/client"),
        ("GET", "/api/streams", None, "/api/streams"),
        ("GET", "/api/broadcasts?limit=1", None, "/api/broadcasts"),
        ("GET", "/api/broadcasts/AbCdEfGhIjKl", None, "/api/broadcasts/{id}"),
        ("PATCH", "/api/broadcasts/AbCdEfGhIjKl", {"title": "t"}, "/api/broadcasts/{id}"),
        ("GET", "/api/service", None, "/api/service"),
        ("POST", "/api/accounts", {"handle": "zed"}, "/api/accounts"),
        ("GET", "/api/accounts", None, "/api/accounts"),
        ("POST", "/api/accounts/zed/rotate-key", None, "/api/accounts/{handle}/rotate-key"),
        ("PUT", "/api/service/phase", {"phase": "registrations_closed"}, "/api/service/phase"),
    ]
    for method, path, body, template in requests:
        status, content_type, raw = await call(service, method, path, body)
        assert content_type.startswith("application/json"), path
        operation = document["paths"][template][method.lower()]
        assert str(status) in operation["responses"], (path, status)
        validator(document, operation, status).validate(json.loads(raw))
        checked += 1
    assert checked == len(requests)
