"""The cache in the request path, in-process: the API over a real router (the simulator over
ASGI), a real cache replica with MiniLM, and callers told apart by trusted headers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from gateway.cache.embedder import Embedder
from gateway.simulator import SimulatorSettings
from tests.support.gateway import InProcessGateway, in_process_gateway

CONFIG = """
auth:
  admin_key: sk-admin
  trusted_header: {trusted_proxies: [127.0.0.1/32], groups_header: x-forwarded-groups}
storage: {url: "sqlite:///%(db)s"}
audit: {enabled: false}
cache:
  isolation: %(isolation)s
  cache_tool_results: %(tool_results)s
  exploration_rate: 0  # no shadow checks: what a lookup finds is what it serves
  routes:
    sim-uncached: {enabled: false}
    sim-keyed: {semantic: false}
providers:
  simulator: {preset: simulator, base_url: "http://sim/v1"}
models:
  sim-small: {targets: [simulator/sim-small]}
  sim-uncached: {targets: [simulator/sim-small]}
  sim-keyed: {targets: [simulator/sim-small]}
"""


_ALICE = {"x-forwarded-user": "alice", "x-forwarded-groups": "staff"}


@dataclass
class Gateway:
    """An in-process gateway with a cache; callers told apart by trusted headers."""

    gw: InProcessGateway

    @property
    def http(self) -> httpx.AsyncClient:
        return self.gw.http

    async def ask(
        self,
        text: str,
        *,
        user: str = "alice",
        groups: str = "staff",
        model: str = "sim-small",
        control: str | None = None,
        **body: Any,
    ) -> httpx.Response:
        headers = {"x-forwarded-user": user, "x-forwarded-groups": groups}
        if control is not None:
            headers["x-raygate-cache-control"] = control
        response = await self.gw.chat(text, model=model, headers=headers, **body)
        return response

    async def upstream_calls(self) -> int:
        return sum(
            1 for r in await self.gw.sim.requests() if r["path"].endswith("/chat/completions")
        )


async def _gateway(
    tmp_path: Path, embedder: Embedder, isolation: str, *, tool_results: bool = False
) -> AsyncIterator[Gateway]:
    config = CONFIG % {
        "db": tmp_path / "raygate.db",
        "isolation": isolation,
        "tool_results": str(tool_results).lower(),
    }
    async with in_process_gateway(
        config, embedder=embedder, sim_settings=SimulatorSettings(seed=3)
    ) as gw:
        yield Gateway(gw)


@pytest_asyncio.fixture
async def gateway(tmp_path: Path, embedder: Embedder) -> AsyncIterator[Gateway]:
    async for gw in _gateway(tmp_path, embedder, "user"):
        yield gw


@pytest_asyncio.fixture
async def group_gateway(tmp_path: Path, embedder: Embedder) -> AsyncIterator[Gateway]:
    async for gw in _gateway(tmp_path, embedder, "group"):
        yield gw


@pytest_asyncio.fixture
async def tool_results_gateway(tmp_path: Path, embedder: Embedder) -> AsyncIterator[Gateway]:
    async for gw in _gateway(tmp_path, embedder, "user", tool_results=True):
        yield gw


def sse_events(text: str) -> list[Any]:
    events = [
        line.removeprefix("data: ") for line in text.splitlines() if line.startswith("data: ")
    ]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


@pytest.mark.asyncio
async def test_each_phase_hits_where_it_should(gateway: Gateway) -> None:
    first = await gateway.ask("What is the capital of Australia?")
    assert first.status_code == 200
    assert first.headers["x-raygate-cache"] == "miss"
    answer = first.json()["choices"][0]["message"]["content"]

    exact = await gateway.ask("What is the capital of Australia?")
    normalised = await gateway.ask("what is the capital of australia")
    semantic = await gateway.ask("What's Australia's capital?")
    assert [r.headers["x-raygate-cache"] for r in (exact, normalised, semantic)] == [
        "exact",
        "normalized",
        "semantic",
    ]
    for hit in (exact, normalised, semantic):
        assert hit.json()["choices"][0]["message"]["content"] == answer
        assert hit.headers["x-raygate-cost-usd"] == "0.00000000"
        assert float(hit.headers["x-raygate-cost-avoided-usd"]) > 0
        assert hit.headers["x-raygate-route"].startswith("cache/")
    assert float(semantic.headers["x-raygate-similarity"]) >= 0.95
    assert await gateway.upstream_calls() == 1


@pytest.mark.asyncio
async def test_a_changed_number_or_reversed_meaning_is_not_served(gateway: Gateway) -> None:
    await gateway.ask("Convert 25 degrees Celsius to Fahrenheit.")
    await gateway.ask("Is it safe to take ibuprofen with alcohol?")
    number = await gateway.ask("Convert 30 degrees Celsius to Fahrenheit.")
    negated = await gateway.ask("Is it not safe to take ibuprofen with alcohol?")
    assert number.headers["x-raygate-cache"] == "miss"
    assert negated.headers["x-raygate-cache"] == "miss"
    assert await gateway.upstream_calls() == 4


@pytest.mark.asyncio
async def test_user_isolation_keeps_entries_to_their_owner(gateway: Gateway) -> None:
    await gateway.ask("Summarise my open tickets", user="alice")
    other = await gateway.ask("Summarise my open tickets", user="bob")
    same = await gateway.ask("Summarise my open tickets", user="alice")
    assert other.headers["x-raygate-cache"] == "miss"
    assert same.headers["x-raygate-cache"] == "exact"


@pytest.mark.asyncio
async def test_group_isolation_shares_within_a_group_only(group_gateway: Gateway) -> None:
    gw = group_gateway
    await gw.ask("What is the on-call rota?", user="alice", groups="sre")
    colleague = await gw.ask("What is the on-call rota?", user="bob", groups="sre")
    outsider = await gw.ask("What is the on-call rota?", user="carol", groups="sales")
    assert colleague.headers["x-raygate-cache"] == "exact"
    assert outsider.headers["x-raygate-cache"] == "miss"


@pytest.mark.asyncio
async def test_scope_separates_models_system_prompts_and_sampling(gateway: Gateway) -> None:
    await gateway.ask("Tell me a fact about owls.", temperature=0.2)
    hotter = await gateway.ask("Tell me a fact about owls.", temperature=0.3)
    other_model = await gateway.ask(
        "Tell me a fact about owls.", model="sim-keyed", temperature=0.2
    )
    system = await gateway.http.post(
        "/v1/chat/completions",
        json={
            "model": "sim-small",
            "temperature": 0.2,
            "messages": [
                {"role": "system", "content": "Answer in French."},
                {"role": "user", "content": "Tell me a fact about owls."},
            ],
        },
        headers={"x-forwarded-user": "alice"},
    )
    assert [r.headers["x-raygate-cache"] for r in (hotter, other_model, system)] == ["miss"] * 3


@pytest.mark.asyncio
async def test_tools_and_hot_sampling_skip_only_the_semantic_phase(gateway: Gateway) -> None:
    await gateway.ask("Write a haiku about the sea.", temperature=1.5)
    paraphrase = await gateway.ask("Compose a haiku about the sea.", temperature=1.5)
    repeat = await gateway.ask("Write a haiku about the sea.", temperature=1.5)
    assert paraphrase.headers["x-raygate-cache"] == "miss"
    assert repeat.headers["x-raygate-cache"] == "exact"


_WITH_TOOL_RESULT: dict[str, Any] = {
    "messages": [
        {"role": "user", "content": "What is the weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "4 degrees, light rain"},
    ]
}


@pytest.mark.asyncio
async def test_requests_carrying_tool_results_always_reach_the_model(gateway: Gateway) -> None:
    first = await gateway.gw.http.post(
        "/v1/chat/completions", json={"model": "sim-small", **_WITH_TOOL_RESULT}, headers=_ALICE
    )
    again = await gateway.gw.http.post(
        "/v1/chat/completions", json={"model": "sim-small", **_WITH_TOOL_RESULT}, headers=_ALICE
    )
    assert [r.status_code for r in (first, again)] == [200, 200]
    assert [r.headers["x-raygate-cache"] for r in (first, again)] == ["bypass", "bypass"]
    assert await gateway.upstream_calls() == 2


@pytest.mark.asyncio
async def test_tool_results_are_cached_exactly_when_configured(
    tool_results_gateway: Gateway,
) -> None:
    gateway = tool_results_gateway
    body = {"model": "sim-small", **_WITH_TOOL_RESULT}
    first = await gateway.gw.http.post("/v1/chat/completions", json=body, headers=_ALICE)
    again = await gateway.gw.http.post("/v1/chat/completions", json=body, headers=_ALICE)
    assert [r.headers["x-raygate-cache"] for r in (first, again)] == ["miss", "exact"]
    assert await gateway.upstream_calls() == 1


@pytest.mark.asyncio
async def test_multi_turn_requests_key_on_the_earlier_turns(gateway: Gateway) -> None:
    def turns(previous: str) -> dict[str, Any]:
        return {
            "messages": [
                {"role": "user", "content": previous},
                {"role": "assistant", "content": "Sure."},
                {"role": "user", "content": "And how long does it take?"},
            ]
        }

    headers = {"x-forwarded-user": "alice"}
    post = gateway.http.post
    body = {"model": "sim-small", **turns("How do I renew my passport?")}
    await post("/v1/chat/completions", json=body, headers=headers)
    same = await post("/v1/chat/completions", json=body, headers=headers)
    other = await post(
        "/v1/chat/completions",
        json={"model": "sim-small", **turns("How do I get a visa?")},
        headers=headers,
    )
    assert same.headers["x-raygate-cache"] == "exact"
    assert other.headers["x-raygate-cache"] == "miss"


@pytest.mark.asyncio
async def test_a_streamed_miss_is_stored_and_a_hit_replays_as_a_stream(gateway: Gateway) -> None:
    miss = await gateway.ask(
        "Explain DNS in one paragraph.", stream=True, stream_options={"include_usage": True}
    )
    assert miss.headers["x-raygate-cache"] == "miss"
    streamed = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in sse_events(miss.text) if c["choices"]
    )
    hit = await gateway.ask(
        "Explain DNS in one paragraph.", stream=True, stream_options={"include_usage": True}
    )
    assert hit.headers["x-raygate-cache"] == "exact"
    assert hit.headers["content-type"].startswith("text/event-stream")
    chunks = sse_events(hit.text)
    replayed = "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
    )
    assert replayed == streamed and len(chunks) > 3
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    whole = await gateway.ask("Explain DNS in one paragraph.")
    assert whole.json()["choices"][0]["message"]["content"] == streamed
    assert await gateway.upstream_calls() == 1


@pytest.mark.asyncio
async def test_cache_control_header(gateway: Gateway) -> None:
    no_store = await gateway.ask("What is a mutex?", control="no-store")
    after_no_store = await gateway.ask("What is a mutex?")
    no_cache = await gateway.ask("What is a mutex?", control="no-cache")
    bypass = await gateway.ask("What is a mutex?", control="bypass")
    hit = await gateway.ask("What is a mutex?", control="no-store")
    assert [
        r.headers["x-raygate-cache"] for r in (no_store, after_no_store, no_cache, bypass, hit)
    ] == ["miss", "miss", "bypass", "bypass", "exact"]
    assert await gateway.upstream_calls() == 4
    bad = await gateway.ask("What is a mutex?", control="sometimes")
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "x-raygate-cache-control"


@pytest.mark.asyncio
async def test_a_route_can_turn_the_cache_off(gateway: Gateway) -> None:
    await gateway.ask("Ping", model="sim-uncached")
    again = await gateway.ask("Ping", model="sim-uncached")
    assert again.headers["x-raygate-cache"] == "off"
    assert "x-raygate-similarity" not in again.headers


@pytest.mark.asyncio
async def test_admin_invalidates_by_model_and_id(gateway: Gateway) -> None:
    admin = {"authorization": "Bearer sk-admin"}
    await gateway.ask("What is TLS?")
    await gateway.ask("What is SSH?", model="sim-keyed")
    stats = (await gateway.http.get("/admin/cache", headers=admin)).json()
    assert stats["entries"] == 2
    invalidated = await gateway.http.post(
        "/admin/cache/invalidate", json={"model": "sim-keyed"}, headers=admin
    )
    assert invalidated.json() == {"invalidated": 1}
    assert (await gateway.ask("What is SSH?", model="sim-keyed")).headers[
        "x-raygate-cache"
    ] == "miss"
    assert (await gateway.ask("What is TLS?")).headers["x-raygate-cache"] == "exact"
    refused = await gateway.http.post("/admin/cache/invalidate", json={}, headers=admin)
    assert refused.status_code == 400
    anonymous = await gateway.http.post("/admin/cache/invalidate", json={"model": "sim-small"})
    assert anonymous.status_code == 401


@pytest.mark.asyncio
async def test_a_failing_cache_is_a_miss_not_an_error(gateway: Gateway) -> None:
    assert gateway.gw.pipeline.cache is not None
    backend = gateway.gw.pipeline.cache.backend

    async def broken(*_: Any) -> Any:
        raise RuntimeError("cache replica is gone")

    backend.lookup = broken  # type: ignore[method-assign]
    backend.insert = broken  # type: ignore[method-assign]
    response = await gateway.ask("Is the cache up?")
    assert response.status_code == 200
    assert response.headers["x-raygate-cache"] == "miss"


@pytest.mark.asyncio
async def test_a_repeat_and_a_paraphrase_right_after_an_answer_hit_without_waiting(
    gateway: Gateway,
) -> None:
    headers = {"x-forwarded-user": "alice", "x-forwarded-groups": "staff"}
    first = await gateway.gw.chat("How do I rotate an AWS access key?", headers=headers)
    repeat = await gateway.gw.chat("How do I rotate an AWS access key?", headers=headers)
    paraphrase = await gateway.gw.chat(
        "What are the steps to rotate an AWS access key?", headers=headers
    )
    assert [r.headers["x-raygate-cache"] for r in (first, repeat, paraphrase)] == [
        "miss",
        "exact",
        "semantic",
    ]
    answer = first.json()["choices"][0]["message"]["content"]
    assert repeat.json()["choices"][0]["message"]["content"] == answer
    assert paraphrase.json()["choices"][0]["message"]["content"] == answer
    assert await gateway.upstream_calls() == 1


@pytest.mark.asyncio
async def test_identical_requests_in_flight_share_one_upstream_call(gateway: Gateway) -> None:
    await gateway.gw.sim.fault(kind="delay", delay_ms=1500)  # holds the first one upstream
    headers = {"x-forwarded-user": "alice", "x-forwarded-groups": "staff"}
    first = asyncio.create_task(gateway.gw.chat("Is the VPN down?", headers=headers))
    deadline = asyncio.get_running_loop().time() + 30
    while await gateway.upstream_calls() == 0:  # the first is upstream now
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    others = await asyncio.gather(
        *(gateway.gw.chat("Is the VPN down?", headers=headers) for _ in range(3))
    )
    answers = {r.json()["choices"][0]["message"]["content"] for r in [await first, *others]}
    assert len(answers) == 1
    assert [r.headers["x-raygate-cache"] for r in others] == ["exact"] * 3
    assert await gateway.upstream_calls() == 1


@pytest.mark.asyncio
async def test_a_checked_candidate_is_answered_fresh_and_the_cache_learns_from_it(
    tmp_path: Path, embedder: Embedder
) -> None:
    values = {"db": tmp_path / "raygate.db", "isolation": "user", "tool_results": "false"}
    config = (CONFIG % values).replace("exploration_rate: 0", "exploration_rate: 1")
    async with in_process_gateway(
        config, embedder=embedder, sim_settings=SimulatorSettings(seed=3)
    ) as gw:
        headers = {"x-forwarded-user": "alice", "x-forwarded-groups": "staff"}
        await gw.chat("How do I rotate an AWS access key?", headers=headers)
        checked = await gw.chat("What are the steps to rotate an AWS access key?", headers=headers)
        assert checked.headers["x-raygate-cache"] == "miss"  # answered fresh, then compared
        assert gw.pipeline.cache is not None
        await gw.pipeline.cache.drain()
        stats = await gw.pipeline.cache.backend.stats()
        upstream = sum(1 for r in await gw.sim.requests() if r["path"].endswith("/completions"))
    assert upstream == 2
    assert sum(stats["observations"].values()) >= 1


async def _upstream(gateway: Gateway, path: str) -> int:
    return sum(1 for r in await gateway.gw.sim.requests() if r["path"] == path)


@pytest.mark.asyncio
async def test_a_repeated_legacy_completion_is_answered_exactly(gateway: Gateway) -> None:
    async def complete(prompt: str, user: str = "alice", **body: Any) -> httpx.Response:
        return await gateway.gw.post(
            "/v1/completions",
            {"model": "sim-small", "prompt": prompt, "max_tokens": 16, **body},
            headers={"x-forwarded-user": user, "x-forwarded-groups": "staff"},
        )

    first = await complete("Once upon a time")
    repeat = await complete("Once upon a time")
    assert [first.headers["x-raygate-cache"], repeat.headers["x-raygate-cache"]] == [
        "miss",
        "exact",
    ]
    assert repeat.json()["choices"] == first.json()["choices"]
    assert repeat.json()["id"] != first.json()["id"]
    assert repeat.headers["x-raygate-route"] == "cache/exact"
    assert float(repeat.headers["x-raygate-cost-avoided-usd"]) > 0
    # Byte for byte: a changed prompt, parameter or caller is a different request.
    others = [
        await complete("once upon a time"),
        await complete("Once upon a time", max_tokens=17),
        await complete("Once upon a time", user="bob"),
    ]
    assert [r.headers["x-raygate-cache"] for r in others] == ["miss"] * 3
    assert await _upstream(gateway, "/v1/completions") == 4


@pytest.mark.asyncio
async def test_repeated_embeddings_are_answered_exactly(gateway: Gateway) -> None:
    async def embed(text: str | list[str], control: str | None = None) -> httpx.Response:
        headers = {"x-forwarded-user": "alice", "x-forwarded-groups": "staff"}
        if control is not None:
            headers["x-raygate-cache-control"] = control
        body = {"model": "sim-small", "input": text}
        return await gateway.gw.post("/v1/embeddings", body, headers=headers)

    first = await embed(["quarterly report", "expense policy"])
    repeat = await embed(["quarterly report", "expense policy"])
    assert repeat.headers["x-raygate-cache"] == "exact"
    assert repeat.json()["data"] == first.json()["data"]
    assert (await embed("quarterly report")).headers["x-raygate-cache"] == "miss"  # not a list
    unstored = await embed("travel policy", control="no-store")
    again = await embed("travel policy")
    assert [unstored.headers["x-raygate-cache"], again.headers["x-raygate-cache"]] == [
        "miss",
        "miss",
    ]
    assert await _upstream(gateway, "/v1/embeddings") == 4


LEAVE = (
    "Employees get twenty-five days of paid leave a year, accrued monthly from their start "
    "date, and may carry five days over into the next year."
)


@pytest.mark.parametrize("precache", [True, False], ids=["precache-on", "precache-off"])
@pytest.mark.asyncio
async def test_a_likely_follow_up_is_answered_before_it_is_asked(
    tmp_path: Path, embedder: Embedder, precache: bool
) -> None:
    setting = "{enabled: %s, min_support: 1}" % ("true" if precache else "false")
    values = {"db": tmp_path / "raygate.db", "isolation": "user", "tool_results": "false"}
    config = (CONFIG % values).replace(
        "  exploration_rate: 0", f"  exploration_rate: 0\n  precache: {setting}"
    )
    config = config.replace("audit: {enabled: false}", "audit: {enabled: true}")
    config = config.replace("  admin_key: sk-admin\n", "")  # the records are read with the default
    headers = {"x-forwarded-user": "alice", "x-forwarded-groups": "staff"}

    async def converse(*turns: str) -> httpx.Response:
        roles = ("user", "assistant") * len(turns)
        messages = [{"role": r, "content": t} for r, t in zip(roles, turns, strict=False)]
        body = {"model": "sim-small", "messages": messages}
        return await gw.post("/v1/chat/completions", body, headers=headers)

    async with in_process_gateway(
        config, embedder=embedder, sim_settings=SimulatorSettings(seed=3)
    ) as gw:
        # Someone asked about contractors after the leave policy; now alice asks about leave.
        await converse("What is the leave policy for employees?", LEAVE, "And contractors?")
        asked = await converse("What are the rules on employee leave?")
        assert (gw.pipeline.precaching is not None) == precache
        if gw.pipeline.precaching is not None:
            await gw.pipeline.precaching.drain()
        answer = asked.json()["choices"][0]["message"]["content"]
        follow_up = await converse(
            "What are the rules on employee leave?", answer, "And contractors?"
        )
        chat_calls = [r for r in await gw.sim.requests() if r["path"] == "/v1/chat/completions"]
        records = await gw.records()
    pre = [r for r in records if r["admin_action"] == "cache.precache"]
    if precache:
        assert follow_up.headers["x-raygate-cache"] == "exact"
        assert len(chat_calls) == 3  # the follow-up was asked once, in the background
        (record,) = pre
        assert record["admin_target"] == f"request:{asked.headers['x-raygate-request-id']}"
        assert record["tokens_in"] > 0 and record["cost_usd"] > 0
    else:
        assert follow_up.headers["x-raygate-cache"] == "miss"
        assert len(chat_calls) == 3 and pre == []
