"""Stored responses on SQLite and PostgreSQL: scoped to their user, bounded by age and count,
sealed at rest when a data key is set, and chained for `previous_response_id`."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import InvalidRequest, NotFound
from gateway.protocol.responses import (
    FunctionCallItem,
    FunctionCallOutputItem,
    MessageItem,
    OutputMessage,
    OutputText,
    Response,
)
from gateway.responses.config import ResponsesConfig
from gateway.responses.store import ResponseStore, StoredResponse
from gateway.storage import Database
from gateway.storage.keyring import Keyring
from gateway.storage.sealing import Sealer


class Clock:
    """Wall time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _store(database_url: str, clock: Clock | None = None, **config: object) -> ResponseStore:
    return ResponseStore(
        Database(database_url), ResponsesConfig.model_validate(config), clock=clock or Clock()
    )


def _turn(text: str, answer: str, *, previous: str | None = None) -> StoredResponse:
    response = Response(
        model="sim-small",
        previous_response_id=previous,
        output=[OutputMessage(content=[OutputText(text=answer)])],
    )
    return StoredResponse(response=response, input=[MessageItem(role="user", content=text)])


@pytest.mark.asyncio
async def test_a_stored_response_is_found_only_by_its_owner(database_url: str) -> None:
    store = _store(database_url)
    turn = _turn("Hello", "Hi there")
    await store.save("alice", turn)
    mine = await store.get("alice", turn.response.id)
    assert mine is not None and mine.response.output_text() == "Hi there"
    assert mine.input[0] == MessageItem(role="user", content="Hello")
    assert await store.get("bob", turn.response.id) is None
    assert await store.delete("bob", turn.response.id) is False
    assert await store.get("alice", turn.response.id) is not None
    assert await store.delete("alice", turn.response.id) is True
    assert await store.get("alice", turn.response.id) is None


@pytest.mark.asyncio
async def test_the_conversation_is_every_turn_oldest_first(database_url: str) -> None:
    store = _store(database_url)
    first = _turn("one", "answer one")
    await store.save("alice", first)
    call = FunctionCallItem(id="fc_1", call_id="call_1", name="lookup", arguments="{}")
    second = StoredResponse(
        response=Response(model="m", previous_response_id=first.response.id, output=[call]),
        input=[MessageItem(role="user", content="two")],
    )
    await store.save("alice", second)
    third = StoredResponse(
        response=Response(
            model="m",
            previous_response_id=second.response.id,
            output=[OutputMessage(content=[OutputText(text="answer three")])],
        ),
        input=[FunctionCallOutputItem(call_id="call_1", output="found")],
    )
    await store.save("alice", third)
    items = await store.conversation("alice", third.response.id)
    kinds = [getattr(i, "content", None) or getattr(i, "output", None) or i.type for i in items]
    assert len(items) == 6
    assert kinds[0] == "one" and kinds[2] == "two" and kinds[4] == "found"
    assert isinstance(items[3], FunctionCallItem) and items[3].call_id == "call_1"
    with pytest.raises(NotFound) as missing:
        await store.conversation("bob", third.response.id)
    assert missing.value.param == "previous_response_id"


@pytest.mark.asyncio
async def test_a_broken_or_overlong_chain_is_refused(database_url: str) -> None:
    store = _store(database_url, max_chain=2)
    first = _turn("one", "1")
    second = _turn("two", "2", previous=first.response.id)
    third = _turn("three", "3", previous=second.response.id)
    for turn in (first, second, third):
        await store.save("alice", turn)
    with pytest.raises(InvalidRequest):
        await store.conversation("alice", third.response.id)
    await store.delete("alice", first.response.id)
    with pytest.raises(NotFound):
        await store.conversation("alice", second.response.id)


@pytest.mark.asyncio
async def test_responses_expire_after_the_ttl(database_url: str) -> None:
    clock = Clock()
    store = _store(database_url, clock, ttl_s=60)
    old = _turn("old", "old answer")
    await store.save("alice", old)
    clock.now += 61
    assert await store.get("alice", old.response.id) is None
    await store.save("alice", _turn("new", "new answer"))  # a write deletes the expired rows
    rows = Database(database_url).fetchall("SELECT response_id FROM stored_responses")
    assert old.response.id not in {r[0] for r in rows}


@pytest.mark.asyncio
async def test_each_user_keeps_at_most_max_per_user_the_oldest_go_first(database_url: str) -> None:
    clock = Clock()
    store = _store(database_url, clock, max_per_user=2)
    turns = [_turn(f"q{i}", f"a{i}") for i in range(3)]
    for turn in turns:
        await store.save("alice", turn)
        clock.now += 1
    await store.save("bob", _turn("b", "b"))
    assert await store.get("alice", turns[0].response.id) is None
    assert await store.get("alice", turns[1].response.id) is not None
    assert await store.get("alice", turns[2].response.id) is not None


@pytest.mark.asyncio
async def test_stored_text_is_sealed_at_rest_with_a_data_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gw.db'}"
    sealer = Sealer(Keyring.parse("k1:" + "ab" * 32, name="data_key"))
    store = ResponseStore(Database(url), ResponsesConfig(), sealer=sealer)
    turn = _turn("my secret question", "my secret answer")
    await store.save("alice", turn)
    raw = Database(url).fetchall("SELECT body FROM stored_responses")
    assert "secret" not in raw[0][0] and raw[0][0].startswith("rgs1:")
    found = await store.get("alice", turn.response.id)
    assert found is not None and found.response.output_text() == "my secret answer"
