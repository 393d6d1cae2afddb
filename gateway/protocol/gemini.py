"""Gemini API response models (`generateContent`, its SSE stream, `batchEmbedContents`).

Only what the gateway reads is modelled; everything else is kept (`extra="allow"`). Requests
are built as plain dicts by `gemini_convert`, since the gateway only ever writes them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class FunctionCall(_Wire):
    name: str
    args: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


class Part(_Wire):
    """One part of a content: text (a thought summary when `thought`), or a function call."""

    text: str | None = None
    thought: bool | None = None
    function_call: FunctionCall | None = Field(None, alias="functionCall")
    thought_signature: str | None = Field(None, alias="thoughtSignature")


class Content(_Wire):
    role: str | None = None
    parts: list[Part] = Field(default_factory=list)


class Candidate(_Wire):
    index: int = 0
    content: Content = Field(default_factory=Content)
    finish_reason: str | None = Field(None, alias="finishReason")


class UsageMetadata(_Wire):
    prompt_token_count: int = Field(0, alias="promptTokenCount")
    candidates_token_count: int = Field(0, alias="candidatesTokenCount")
    thoughts_token_count: int = Field(0, alias="thoughtsTokenCount")
    cached_content_token_count: int = Field(0, alias="cachedContentTokenCount")
    total_token_count: int | None = Field(None, alias="totalTokenCount")


class PromptFeedback(_Wire):
    block_reason: str | None = Field(None, alias="blockReason")


class GenerateContentResponse(_Wire):
    """A whole answer, or one event of a `streamGenerateContent?alt=sse` stream."""

    candidates: list[Candidate] = Field(default_factory=list)
    usage_metadata: UsageMetadata | None = Field(None, alias="usageMetadata")
    prompt_feedback: PromptFeedback | None = Field(None, alias="promptFeedback")
    response_id: str | None = Field(None, alias="responseId")
    model_version: str | None = Field(None, alias="modelVersion")


class ContentEmbedding(_Wire):
    values: list[float]


class BatchEmbedContentsResponse(_Wire):
    embeddings: list[ContentEmbedding]
