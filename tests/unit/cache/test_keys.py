"""Scope keys, exact and normalised keys, and semantic eligibility."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.cache.config import CacheConfig
from gateway.cache.keys import (
    exact_key,
    normalised_key,
    scope_key,
    semantic_eligibility,
    signature,
    split_last_user_turn,
)


def _scope(
    messages: list[dict[str, Any]] | None = None,
    *,
    model: str = "gpt-4o-mini",
    params: dict[str, Any] | None = None,
    isolation: Any = "user",
    identity: str = "alice",
) -> str:
    return scope_key(
        model=model,
        messages=messages or [{"role": "user", "content": "What is Ray Serve?"}],
        params=params or {},
        isolation=isolation,
        identity=identity,
    )


def test_scope_ignores_the_last_user_turn() -> None:
    a = _scope([{"role": "user", "content": "What is Ray?"}])
    b = _scope([{"role": "user", "content": "Explain FAISS"}])
    assert a == b


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o"},
        {"identity": "bob"},
        {"params": {"temperature": 0.7}},
        {"params": {"max_tokens": 10}},
        {"params": {"stop": ["\n"]}},
        {"params": {"response_format": {"type": "json_object"}}},
        {"params": {"seed": 3}},
        {"params": {"tools": [{"type": "function", "function": {"name": "f"}}]}},
    ],
)
def test_scope_changes_with_what_changes_the_answer(change: dict[str, Any]) -> None:
    assert _scope(**change) != _scope()


def test_scope_ignores_parameters_that_do_not_change_the_answer() -> None:
    assert _scope(params={"stream": True, "user": "x", "metadata": {"a": 1}}) == _scope()


def test_scope_changes_with_system_prompt() -> None:
    with_system = [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "What is Ray Serve?"},
    ]
    assert _scope(with_system) != _scope()


def test_isolation_levels_partition_by_their_identity() -> None:
    assert _scope(isolation="global", identity="") == _scope(isolation="global", identity="")
    assert _scope(isolation="group", identity="eng") != _scope(isolation="group", identity="ops")
    assert _scope(isolation="group", identity="eng") != _scope(isolation="user", identity="eng")
    with pytest.raises(ValueError, match="identity"):
        _scope(isolation="user", identity="")


def test_multi_turn_scope_hashes_earlier_turns() -> None:
    def turns(answer: str) -> list[dict[str, Any]]:
        return [
            {"role": "user", "content": "Tell me about Paris."},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": "How big is it?"},
        ]

    assert _scope(turns("Paris is the capital of France.")) != _scope(
        turns("Paris is a city in Texas.")
    )
    assert _scope(turns("Paris is the capital of France.")) != _scope(
        [{"role": "user", "content": "How big is it?"}]
    )
    context, last = split_last_user_turn(turns("x"))
    assert last == "How big is it?"
    assert len(context) == 2


def test_content_parts_are_read_as_text() -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
    assert split_last_user_turn(parts)[1] == "hello"


def test_exact_key_tolerates_only_spacing() -> None:
    scope = _scope()
    assert exact_key(scope, "What is Ray?") == exact_key(scope, "  What   is Ray? ")
    assert exact_key(scope, "What is Ray?") != exact_key(scope, "what is ray")
    assert exact_key(scope, "What is Ray?") != exact_key(_scope(model="other"), "What is Ray?")


def test_signature_drops_case_punctuation_and_filler() -> None:
    assert signature("Hey, could you please tell me: What is Ray?!") == "tell me what is ray"
    assert signature("Can you explain FAISS, kindly?") == "explain faiss"
    assert signature("What is ray") == signature("what   is RAY???")


def test_signature_keeps_numbers_apart() -> None:
    assert signature("What is 3.5% of $100?") != signature("What is 35% of $100?")
    assert signature("What is 3.5% of $100?") != signature("What is 3.5% of 100 yen?")


def test_normalised_key_is_scoped() -> None:
    assert normalised_key(_scope(), "hi what is ray") == normalised_key(_scope(), "What is Ray?")
    assert normalised_key(_scope(), "What is Ray?") != normalised_key(
        _scope(identity="bob"), "What is Ray?"
    )


@pytest.mark.parametrize(
    ("messages", "params", "reason"),
    [
        ([], {"tools": [{"type": "function"}]}, "tools"),
        ([{"role": "tool", "content": "42", "tool_call_id": "c1"}], {}, "tools"),
        ([], {"n": 3}, "n>1"),
        ([], {"temperature": 1.5}, "temperature"),
    ],
)
def test_requests_that_a_paraphrase_should_not_answer_are_ineligible(
    messages: list[dict[str, Any]], params: dict[str, Any], reason: str
) -> None:
    verdict = semantic_eligibility(messages, params, CacheConfig())
    assert verdict == (False, reason)


def test_configuration_can_open_the_semantic_phase() -> None:
    config = CacheConfig(
        semantic_for_tools=True, semantic_for_multiple_choices=True, semantic_max_temperature=2
    )
    params = {"tools": [{"type": "function"}], "n": 2, "temperature": 1.5}
    assert semantic_eligibility([], params, config).eligible
    assert semantic_eligibility([], {"temperature": 0.2}, CacheConfig()).eligible
