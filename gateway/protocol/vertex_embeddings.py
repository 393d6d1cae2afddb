"""OpenAI embedding requests onto Vertex AI's text-embedding `predict`, and the answers back.

`{"instances": [{"content": text, "task_type"?}], "parameters": {"outputDimensionality"?}}`
in, `{"predictions": [{"embeddings": {"values", "statistics": {"token_count"}}}]}` out.
Usage is the sum of the token counts Vertex reports. An extra `task_type` field on the request
(RETRIEVAL_DOCUMENT, RETRIEVAL_QUERY, ...) is passed on.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.errors import UnsupportedParameter, UpstreamError
from gateway.protocol.openai import (
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
)


class _Statistics(BaseModel):
    model_config = ConfigDict(extra="allow")
    token_count: float = 0


class _Values(BaseModel):
    model_config = ConfigDict(extra="allow")
    values: list[float]
    statistics: _Statistics = Field(default_factory=_Statistics)


class _Prediction(BaseModel):
    model_config = ConfigDict(extra="allow")
    embeddings: _Values


class PredictResponse(BaseModel):
    """The answer of a text-embedding model's `predict`."""

    model_config = ConfigDict(extra="allow")
    predictions: list[_Prediction]


def embedding_request_to_vertex(req: EmbeddingRequest) -> dict[str, Any]:
    """The `predict` body; token-id inputs are refused (`UnsupportedParameter`)."""
    inputs = [req.input] if isinstance(req.input, str) else req.input
    if not all(isinstance(text, str) for text in inputs):
        raise UnsupportedParameter("Vertex AI embeds text only, not token ids", param="input")
    task_type = (req.model_extra or {}).get("task_type")
    instances = [
        {"content": text, **({"task_type": task_type} if task_type else {})} for text in inputs
    ]
    body: dict[str, Any] = {"instances": instances}
    if req.dimensions is not None:
        body["parameters"] = {"outputDimensionality": req.dimensions}
    return body


def vertex_to_embeddings(body: Any, *, request: EmbeddingRequest) -> EmbeddingResponse:
    """The OpenAI embedding list for a `predict` answer to `request`; `UpstreamError` when it
    is malformed or has the wrong number of vectors."""
    try:
        response = PredictResponse.model_validate(body)
    except ValidationError:
        raise UpstreamError("the upstream answered in a shape that is not Vertex AI's") from None
    expected = 1 if isinstance(request.input, str) else len(request.input)
    if len(response.predictions) != expected:
        raise UpstreamError(
            f"the upstream sent {len(response.predictions)} embeddings for {expected} inputs"
        )
    data = []
    tokens = 0
    for index, prediction in enumerate(response.predictions):
        values = prediction.embeddings.values
        tokens += int(prediction.embeddings.statistics.token_count)
        vector: list[float] | str = values
        if request.encoding_format == "base64":
            vector = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        data.append(Embedding(index=index, embedding=vector))
    usage = EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
    return EmbeddingResponse(data=data, model=request.model, usage=usage)
