"""Fitting requests to targets: lossless renames, no-op values, refusals and drops."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import UnsupportedParameter
from gateway.protocol.openai import ChatCompletionRequest, EmbeddingRequest
from gateway.providers.config import ProviderConfig
from gateway.providers.params import conform, merge_drop
from gateway.providers.presets import PRESETS


def chat(model: str = "m", **fields: Any) -> ChatCompletionRequest:
    messages = fields.pop("messages", [{"role": "user", "content": "hi"}])
    return ChatCompletionRequest.model_validate({"model": model, "messages": messages, **fields})


def test_reasoning_models_get_max_completion_tokens_and_refuse_sampling() -> None:
    openai = PRESETS["openai"]
    fitted = conform(chat("o3-mini", max_tokens=100, temperature=1), openai, provider="openai")
    assert fitted.request.max_completion_tokens == 100 and fitted.request.max_tokens is None
    assert fitted.request.temperature is None  # its no-op value, left out
    with pytest.raises(UnsupportedParameter, match="for model 'o3-mini'") as refused:
        conform(chat("o3-mini", temperature=0.2), openai, provider="openai")
    assert refused.value.param == "temperature"
    # The same request is fine for a model that is not a reasoning model.
    plain = conform(chat("gpt-4o", max_tokens=100, temperature=0.2), openai, provider="openai")
    assert plain.request.max_tokens == 100 and plain.request.temperature == 0.2


def test_reasoning_effort_is_refused_for_a_providers_other_models() -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        conform(chat("gpt-4o", reasoning_effort="low"), PRESETS["openai"], provider="openai")
    assert refused.value.param == "reasoning_effort"
    fitted = conform(chat("o4-mini", reasoning_effort="low"), PRESETS["openai"], provider="o")
    assert (fitted.request.model_extra or {})["reasoning_effort"] == "low"


def test_developer_role_becomes_system_where_unknown() -> None:
    messages = [{"role": "developer", "content": "rules"}, {"role": "user", "content": "hi"}]
    groq = conform(chat(messages=messages), PRESETS["groq"], provider="groq")
    assert [m.role for m in groq.request.messages] == ["system", "user"]
    openai = conform(chat(messages=messages), PRESETS["openai"], provider="openai")
    assert [m.role for m in openai.request.messages] == ["developer", "user"]


def test_output_limit_goes_under_the_name_the_upstream_takes() -> None:
    fitted = conform(chat(max_completion_tokens=7), PRESETS["mistral"], provider="mistral")
    assert fitted.request.max_tokens == 7 and fitted.request.max_completion_tokens is None
    deepseek = conform(chat("deepseek-reasoner", max_tokens=9), PRESETS["deepseek"], provider="d")
    assert deepseek.request.max_tokens == 9  # a reasoning model, but DeepSeek takes max_tokens


def test_unhonoured_parameters_are_dropped_when_allowed_and_reported() -> None:
    gemini = PRESETS["gemini"]
    request = chat(parallel_tool_calls=False, logprobs=True)
    with pytest.raises(UnsupportedParameter, match="drop_params") as refused:
        conform(request, gemini, provider="gemini")
    assert refused.value.param == "logprobs"  # the first by name
    only_one = ["parallel_tool_calls"]
    with pytest.raises(UnsupportedParameter):
        conform(request, gemini, provider="gemini", drop=only_one)
    dropped = conform(request, gemini, provider="gemini", drop=True)
    assert dropped.dropped == ["logprobs", "parallel_tool_calls"]
    assert dropped.request.parallel_tool_calls is None and dropped.request.logprobs is None


def test_no_op_values_are_left_out_silently() -> None:
    fitted = conform(
        chat(n=1, logprobs=False, parallel_tool_calls=True), PRESETS["gemini"], provider="g"
    )
    assert fitted.dropped == []
    assert fitted.request.set_params() == {"model", "messages", "n"}  # n is no trouble for Gemini


def test_a_request_with_nothing_to_change_is_the_same_object() -> None:
    request = chat(temperature=0.5)
    assert conform(request, PRESETS["openai"], provider="openai").request is request


def test_embeddings_on_a_chat_only_provider_are_refused() -> None:
    with pytest.raises(UnsupportedParameter, match="does not offer embeddings"):
        conform(EmbeddingRequest(model="m", input="x"), PRESETS["anthropic"], provider="claude")


def test_merge_drop() -> None:
    assert merge_drop(False, None) == []
    assert merge_drop(["a"], ["b", "a"]) == ["a", "b"]
    assert merge_drop(["a"], True) is True


def test_a_provider_configured_by_kind_alone_knows_its_wire_formats_limits() -> None:
    # LangChain sends `parallel_tool_calls: false`; a Gemini upstream cannot honour it, with or
    # without a preset, and drop_params must be able to drop it in both cases.
    bare = ProviderConfig(kind="gemini", base_url="http://127.0.0.1:1", drop_params=True)
    preset = bare.resolved_preset
    assert preset.auth == "x-goog-api-key" and "parallel_tool_calls" in preset.unsupported_params
    assert preset.api_key_env is None  # never another provider's key variable
    fitted = conform(chat(parallel_tool_calls=False), preset, provider="g", drop=True)
    assert fitted.dropped == ["parallel_tool_calls"]
    with pytest.raises(UnsupportedParameter, match="parallel_tool_calls"):
        conform(chat(parallel_tool_calls=False), preset, provider="g")
    custom = ProviderConfig(kind="openai", base_url="http://127.0.0.1:1").resolved_preset
    assert custom.api_key_env is None and custom.reasoning_models == []
