"""Every route of the gateway fuzzed from its own OpenAPI document (schemathesis): valid and
invalid bodies, parameters and headers, generated from the schemas. No answer may be a 5xx,
and every answer must match what the document says (status, content type, body schema).

The gateway runs as a real HTTP server on loopback (uvicorn, in a thread) over the simulator
and a real cache replica with MiniLM; bounded and derandomised, so every run asks the same
questions.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.api import create_api
from gateway.cache.cache import SemanticCache
from gateway.cache.embedder import Embedder
from gateway.cache.log import CacheLog
from gateway.cache.service import CacheService
from gateway.config import parse_config
from gateway.providers.registry import build_provider
from gateway.routing.router import Router
from gateway.storage import Database
from tests.support import free_port
from tests.support.simulator import Sim

pytestmark = pytest.mark.slow

ADMIN_KEY = "sk-fuzz-admin-0123456789"
CONFIG = """
auth: {{dev_key: sk-fuzz, admin_key: {admin}, key_secret: "0123456789abcdef0123456789abcdef"}}
storage: {{url: "sqlite:///{db}"}}
audit: {{prompt: redacted}}
policy:
  profiles:
    default: {{pii: {{"*": redact}}, output: {{US_SSN: block}}}}
cache: {{isolation: user}}
providers:
  sim: {{preset: simulator, base_url: "http://sim/v1"}}
  sim-anthropic: {{kind: anthropic, base_url: "http://sim", api_key: simulated}}
models:
  sim-small: {{targets: [sim/sim-small]}}
  sim-claude: {{targets: [sim-anthropic/claude-sim]}}
  sim-embed: {{targets: [sim/sim-embed]}}
"""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 40  # per operation; derandomised, so the same cases every run


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[str]:
    """The gateway, served on a loopback port until the module's tests are done."""
    db = tmp_path_factory.mktemp("fuzz") / "gw.db"
    config = parse_config(CONFIG.format(admin=ADMIN_KEY, db=db), env={})
    sim = Sim()
    providers = {
        name: build_provider(name, p, transport=sim.transport)
        for name, p in config.enabled_providers().items()
    }

    async def embed(texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(embedder.embed, texts)

    cache = CacheService(
        SemanticCache(embedder, config.cache), embed, CacheLog(Database(config.storage.url))
    )
    app = create_api(config, Router(config, providers), cache=cache)
    app.router.on_startup.append(cache.start)
    app.router.on_shutdown.append(cache.aclose)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:  # uvicorn's own flag, set once it listens
        assert thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)  # poll interval
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def public_schema(gateway_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")


@pytest.fixture(scope="module")
def admin_schema(gateway_url: str) -> Any:
    return schemathesis.openapi.from_url(
        f"{gateway_url}/admin/openapi.json", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    )


def fuzz(schema: Any, base_url: str, headers: dict[str, str]) -> list[str]:
    """Run every operation of `schema` against the gateway; what failed, and how."""
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],  # no shrinking: report, do not linger
        )
        def run(case: schemathesis.Case) -> None:
            response = case.call(base_url=base_url, headers=headers)
            case.validate_response(response, checks=CHECKS)

        try:
            run()
        except Exception as exc:  # each operation's failure is collected, then all reported
            failures.append(f"{operation.label}: {exc}")
    return failures


def test_public_routes_never_answer_5xx_and_match_their_document(
    public_schema: Any, gateway_url: str
) -> None:
    failures = fuzz(public_schema, gateway_url, {"authorization": "Bearer sk-fuzz"})
    assert not failures, "\n\n".join(failures)


def test_admin_routes_never_answer_5xx_and_match_their_document(
    admin_schema: Any, gateway_url: str
) -> None:
    failures = fuzz(admin_schema, gateway_url, {"authorization": f"Bearer {ADMIN_KEY}"})
    assert not failures, "\n\n".join(failures)


def test_the_documents_describe_every_route(public_schema: Any, admin_schema: Any) -> None:
    public_paths = set(public_schema.raw_schema["paths"])
    assert {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/models",
        "/v1/messages",
        "/healthz",
        "/readyz",
    } <= public_paths
    assert not any(path.startswith("/admin") for path in public_paths)
    admin_paths = set(admin_schema.raw_schema["paths"])
    assert {"/admin/keys", "/admin/audit/records", "/admin/cache/invalidate"} <= admin_paths


def test_the_admin_document_needs_an_admin_key(gateway_url: str) -> None:
    anonymous = httpx.get(f"{gateway_url}/admin/openapi.json")
    assert anonymous.status_code == 401
