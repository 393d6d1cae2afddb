"""Fitting a request to what one upstream takes: renames, refusals and dropped parameters.

Before any call, a canonical (OpenAI-shaped) request is conformed to its target:

* lossless rewrites: the `developer` role becomes `system` where the upstream does not know
  it; the output limit goes under the one name the upstream takes (`max_tokens` or
  `max_completion_tokens`); reasoning models get `max_completion_tokens`;
* a parameter set to its no-op value (`n: 1`, `logprobs: false`, `parallel_tool_calls: true`,
  a penalty of 0, a reasoning model's `temperature: 1`) is removed without a word: the
  upstream would do that anyway;
* any other parameter the upstream cannot honour is refused with a 400
  `unsupported_parameter` naming it, or, where the provider or the model alias says
  `drop_params`, removed and reported in `Conformed.dropped`.

What cannot be honoured comes from the preset (`unsupported_params`), and for reasoning models
(`reasoning_models` patterns) also the sampling parameters they reject; `reasoning_effort` is
refused for a provider's models that are not reasoning models.

A field the wire models do not name passes on only where `extra_params.yaml` lists it for the
provider's wire format (or the provider's `extra_params` does): an unknown field would reach
the upstream unseen by the input policy, the audit trail and the cache key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cache
from importlib import resources
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel

from gateway.errors import UnsupportedParameter
from gateway.protocol.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from gateway.providers.config import DropParams
from gateway.providers.presets import Endpoint, ProviderPreset

Request = TypeVar("Request", ChatCompletionRequest, CompletionRequest, EmbeddingRequest)

REASONING_REFUSED = (
    "temperature",
    "top_p",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "logit_bias",
)
"""Sampling parameters OpenAI-style reasoning models reject (at any but their no-op value)."""

_NO_OP: dict[str, Any] = {
    "n": 1,
    "logprobs": False,
    "parallel_tool_calls": True,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logit_bias": {},
}
_REASONING_NO_OP: dict[str, Any] = {"temperature": 1, "top_p": 1}
_MISSING = object()


@dataclass(slots=True)
class Conformed(Generic[Request]):
    """A request fitted to one target, and the parameters dropped on the way (sorted)."""

    request: Request
    dropped: list[str] = field(default_factory=list)


def endpoint_of(request: BaseModel) -> Endpoint:
    """Which endpoint a canonical request is for."""
    if isinstance(request, EmbeddingRequest):
        return "embeddings"
    if isinstance(request, CompletionRequest):
        return "completions"
    return "chat"


def merge_drop(*policies: DropParams | None) -> DropParams:
    """One drop policy from several (a provider's and an alias's): `True` wins, else the
    union of the names."""
    names: set[str] = set()
    for policy in policies:
        if policy is True:
            return True
        if isinstance(policy, list):
            names.update(policy)
    return sorted(names)


def conform(
    request: Request, preset: ProviderPreset, *, provider: str, drop: DropParams = False
) -> Conformed[Request]:
    """The request as this provider's upstream takes it (see the module docstring).

    Raises `UnsupportedParameter` for the first (by name) parameter that can be neither
    honoured nor dropped, and for an endpoint the upstream does not serve.
    """
    endpoint = endpoint_of(request)
    if endpoint == "embeddings" and "embeddings" not in preset.endpoints:
        raise UnsupportedParameter(
            f"provider {provider!r} ({preset.title or preset.kind}) does not offer embeddings",
            param="model",
        )
    reasoning = is_reasoning_model(request.model, preset)
    passed = passed_extras(preset.kind) | set(preset.extra_params)
    unknown = sorted(set(request.model_extra or {}) - passed)
    if isinstance(request, ChatCompletionRequest) and (unread := request.unread_fields()):
        raise UnsupportedParameter(
            f"field {unread[0]!r} is not one raygate reads or passes on: an unknown field "
            "would reach the provider unchecked by the policy",
            param=unread[0],
        )
    no_op = {**_NO_OP, **(_REASONING_NO_OP if reasoning else {})}
    refused = set(preset.unsupported_params)
    if reasoning:
        refused.update(REASONING_REFUSED)
    elif preset.reasoning_models:
        refused.add("reasoning_effort")
    values = request.model_dump(exclude_unset=True, exclude_none=True)
    removed: dict[str, None] = {}
    unhonoured: list[str] = list(unknown)
    for param in sorted(request.set_params() & refused - set(unknown)):
        if values.get(param, _MISSING) == no_op.get(param, _MISSING):
            removed[param] = None
        else:
            unhonoured.append(param)
    dropped = [p for p in unhonoured if drop is True or (isinstance(drop, list) and p in drop)]
    for param in unhonoured:
        if param in unknown and param not in dropped:
            raise UnsupportedParameter(
                f"parameter {param!r} is not one raygate passes to provider {provider!r}: an "
                "unknown field would reach it unchecked by the policy; the provider's "
                "extra_params allows it, drop_params drops it",
                param=param,
            )
        if param not in dropped:
            raise UnsupportedParameter(
                f"parameter {param!r} is not supported by provider {provider!r}"
                f"{f' for model {request.model!r}' if reasoning else ''}; "
                "set drop_params on the provider or the model alias to drop it instead",
                param=param,
            )
    removed.update(dict.fromkeys(dropped))
    values = {k: v for k, v in values.items() if k not in removed}
    rewritten = isinstance(request, ChatCompletionRequest) and _rewrite_chat(
        values, preset, reasoning=reasoning
    )
    if not removed and not rewritten:
        return Conformed(request)
    return Conformed(type(request).model_validate(values), dropped)


@cache
def passed_extras(kind: str) -> frozenset[str]:
    """The fields outside the wire models that pass on to an upstream of wire format `kind`
    (`extra_params.yaml`)."""
    listed = yaml.safe_load(
        resources.files("gateway.providers").joinpath("extra_params.yaml").read_text()
    )
    return frozenset(_flat(listed.get(kind, [])))


def _flat(items: list[Any]) -> list[str]:
    # The YAML shares lists through anchors, which nest them.
    return [name for item in items for name in (_flat(item) if isinstance(item, list) else [item])]


def is_reasoning_model(model: str, preset: ProviderPreset) -> bool:
    """Whether `model` matches one of the preset's reasoning-model patterns."""
    return any(fnmatchcase(model, pattern) for pattern in preset.reasoning_models)


def _rewrite_chat(values: dict[str, Any], preset: ProviderPreset, *, reasoning: bool) -> bool:
    """Rewrite a chat request's values in place for the upstream; whether anything changed."""
    changed = False
    if not preset.developer_role:
        messages = values["messages"]
        if any(m.get("role") == "developer" for m in messages):
            values["messages"] = [
                {**m, "role": "system"} if m.get("role") == "developer" else m for m in messages
            ]
            changed = True
    limit_field = preset.max_tokens_field or ("max_completion_tokens" if reasoning else None)
    if limit_field is not None:
        other = "max_tokens" if limit_field == "max_completion_tokens" else "max_completion_tokens"
        limit = values.pop(other, None)
        if limit is not None:
            values.setdefault(limit_field, limit)
            changed = True
    return changed
