"""What the cache takes from a request: `chat_request` (chat and Anthropic messages) and the
exact keys of legacy completions and embeddings."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.cache.config import CacheConfig
from gateway.cache.request import chat_request, completion_request, embedding_request
from gateway.protocol.anthropic import MessagesRequest
from gateway.protocol.anthropic_convert import messages_to_chat_request

CONFIG = CacheConfig(isolation="user")
LONG_ANSWER = (
    "Employees get twenty five days of paid leave a year, plus public holidays, "
    "accrued monthly from their start date."
)


def _chat(messages: list[dict[str, Any]], **params: Any) -> Any:
    return chat_request("gpt-4o-mini", messages, params, CONFIG, user="alice", groups=["eng"])


def _conversation(first: str, answer: str = LONG_ANSWER, follow: str = "And contractors?") -> Any:
    return _chat(
        [
            {"role": "user", "content": first},
            {"role": "assistant", "content": answer},
            {"role": "user", "content": follow},
        ]
    )


def test_a_single_question_keys_on_its_text_with_no_context() -> None:
    request = _chat(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    )
    assert (request.text, request.context, request.eligible, request.cacheable) == (
        "Hi?",
        "",
        True,
        True,
    )
    assert request.threshold == CONFIG.similarity_threshold


def test_a_conversation_carries_its_earlier_user_turns_as_context_most_recent_first() -> None:
    request = _chat(
        [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": LONG_ANSWER},
            {"role": "user", "content": "second"},
            {"role": "assistant", "content": LONG_ANSWER},
            {"role": "user", "content": "third"},
        ]
    )
    assert (request.text, request.context) == ("third", "second\nfirst")


def test_conversations_differing_only_in_meaning_share_a_scope() -> None:
    """The scope no longer hashes the history: the lookup compares its meaning instead."""
    a = _conversation("What is the leave policy?")
    b = _conversation("What's our policy on annual leave?", LONG_ANSWER.replace("get", "receive"))
    assert a.scope == b.scope
    assert a.context != b.context


def test_a_conversation_never_shares_a_scope_with_a_single_question() -> None:
    assert (
        _conversation("What is the leave policy?").scope
        != _chat([{"role": "user", "content": "And contractors?"}]).scope
    )


def test_short_assistant_turns_must_match_exactly() -> None:
    """Few-shot answers steer the model: "chat" and "gato" are not the same conversation."""
    french = _conversation("Translate: cat", "chat", "Translate: dog")
    spanish = _conversation("Translate: cat", "gato", "Translate: dog")
    assert french.scope != spanish.scope


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o"},
        {"user": "bob"},
        {"params": {"temperature": 0.2}},
        {"system": "Answer in French."},
    ],
)
def test_conversation_scope_keeps_what_must_match(change: dict[str, Any]) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "What is the leave policy?"},
        {"role": "assistant", "content": LONG_ANSWER},
        {"role": "user", "content": "And contractors?"},
    ]
    if "system" in change:
        messages.insert(0, {"role": "system", "content": change["system"]})
    base = chat_request("gpt-4o-mini", messages[-3:], {}, CONFIG, user="alice")
    other = chat_request(
        change.get("model", "gpt-4o-mini"),
        messages,
        change.get("params", {}),
        CONFIG,
        user=change.get("user", "alice"),
    )
    assert other.scope != base.scope


def test_a_conversation_with_tools_keeps_its_exact_history_and_no_context() -> None:
    request = _chat(
        [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "tool_calls": [{"id": "1", "type": "function"}]},
            {"role": "tool", "tool_call_id": "1", "content": "sunny"},
            {"role": "user", "content": "and tomorrow?"},
        ]
    )
    assert request.context == "" and not request.eligible
    other = _chat(
        [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "tool_calls": [{"id": "1", "type": "function"}]},
            {"role": "tool", "tool_call_id": "1", "content": "rain"},
            {"role": "user", "content": "and tomorrow?"},
        ]
    )
    assert other.scope != request.scope


def test_a_request_without_a_user_turn_is_not_cacheable() -> None:
    request = _chat([{"role": "system", "content": "Be brief."}])
    assert not request.cacheable


def test_the_query_and_the_entry_carry_the_request() -> None:
    request = _conversation("What is the leave policy?")
    query = request.query()
    entry = request.entry('{"content": "x"}')
    assert (query.scope, query.text, query.context, query.model) == (
        request.scope,
        request.text,
        request.context,
        "gpt-4o-mini",
    )
    assert (entry.scope, entry.text, entry.context, entry.model) == (
        request.scope,
        request.text,
        request.context,
        "gpt-4o-mini",
    )


def test_anthropic_messages_key_like_the_same_chat_request() -> None:
    """/v1/messages is translated to a chat request first, so the chat keys serve it."""
    anthropic = MessagesRequest.model_validate(
        {
            "model": "gpt-4o-mini",
            "max_tokens": 256,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "What is Ray?"}]},
                {"role": "assistant", "content": LONG_ANSWER},
                {"role": "user", "content": "And Serve?"},
            ],
        }
    )
    chat = messages_to_chat_request(anthropic)
    translated = chat_request(
        chat.model,
        [m.model_dump(exclude_none=True) for m in chat.messages],
        chat.model_dump(exclude_none=True, exclude={"messages", "model"}),
        CONFIG,
        user="alice",
        groups=["eng"],
    )
    direct = _chat(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is Ray?"},
            {"role": "assistant", "content": LONG_ANSWER},
            {"role": "user", "content": "And Serve?"},
        ],
        max_tokens=256,
    )
    assert (translated.scope, translated.text, translated.context) == (
        direct.scope,
        direct.text,
        direct.context,
    )


def test_legacy_completions_key_on_the_raw_prompt_exactly() -> None:
    a = completion_request("davinci", "Hello\n", {"max_tokens": 5}, CONFIG, user="alice")
    assert a.exact_only and not a.eligible and a.cacheable
    assert a.query().exact_only and not a.query().eligible
    same = completion_request(
        "davinci", "Hello\n", {"max_tokens": 5, "stream": True}, CONFIG, user="alice"
    )
    assert (same.scope, same.text) == (a.scope, a.text)
    for other in (
        completion_request("davinci", "Hello ", {"max_tokens": 5}, CONFIG, user="alice"),
        completion_request("davinci", ["Hello\n"], {"max_tokens": 5}, CONFIG, user="alice"),
    ):
        assert other.text != a.text
    for other in (
        completion_request("davinci", "Hello\n", {"max_tokens": 6}, CONFIG, user="alice"),
        completion_request(
            "davinci", "Hello\n", {"max_tokens": 5, "suffix": "!"}, CONFIG, user="alice"
        ),
        completion_request("babbage", "Hello\n", {"max_tokens": 5}, CONFIG, user="alice"),
        completion_request("davinci", "Hello\n", {"max_tokens": 5}, CONFIG, user="bob"),
    ):
        assert other.scope != a.scope


def test_embeddings_key_on_the_input_and_its_encoding() -> None:
    a = embedding_request("text-embedding-3-small", ["a", "b"], {}, CONFIG, user="alice")
    assert a.exact_only and a.cacheable
    assert (
        embedding_request("text-embedding-3-small", ["b", "a"], {}, CONFIG, user="alice").text
        != a.text
    )
    for params in ({"encoding_format": "base64"}, {"dimensions": 256}):
        assert (
            embedding_request(
                "text-embedding-3-small", ["a", "b"], params, CONFIG, user="alice"
            ).scope
            != a.scope
        )
    assert (
        embedding_request(
            "text-embedding-3-small", ["a", "b"], {"user": "x"}, CONFIG, user="alice"
        ).scope
        == a.scope
    )
    # Never the chat scope of the same model.
    assert (
        completion_request("text-embedding-3-small", ["a", "b"], {}, CONFIG, user="alice").scope
        != a.scope
    )


def test_an_empty_prompt_or_input_is_not_cacheable() -> None:
    assert not completion_request("davinci", "", {}, CONFIG, user="alice").cacheable
    assert not embedding_request("e", [], {}, CONFIG, user="alice").cacheable
