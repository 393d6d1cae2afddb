"""OpenAI embedding requests onto Gemini's `batchEmbedContents`, and the answers back.

Gemini reports no token counts for embeddings, so usage is 0. Base64 output is encoded
here, as OpenAI does it: little-endian float32.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from pydantic import ValidationError

from gateway.errors import UnsupportedParameter, UpstreamError
from gateway.protocol.gemini import BatchEmbedContentsResponse
from gateway.protocol.openai import Embedding, EmbeddingRequest, EmbeddingResponse


def embedding_request_to_gemini(req: EmbeddingRequest) -> dict[str, Any]:
    """The `batchEmbedContents` body; token-id inputs are refused (`UnsupportedParameter`)."""
    inputs = [req.input] if isinstance(req.input, str) else req.input
    if not all(isinstance(text, str) for text in inputs):
        raise UnsupportedParameter("Gemini embeds text only, not token ids", param="input")
    requests = []
    for text in inputs:
        entry: dict[str, Any] = {
            "model": f"models/{req.model}",
            "content": {"parts": [{"text": text}]},
        }
        if req.dimensions is not None:
            entry["outputDimensionality"] = req.dimensions
        requests.append(entry)
    return {"requests": requests}


def gemini_to_embeddings(body: Any, *, request: EmbeddingRequest) -> EmbeddingResponse:
    """The OpenAI embedding list for a `batchEmbedContents` answer to `request`.

    Base64 encoding is done here, as OpenAI does it: little-endian float32. Raises
    `UpstreamError` when the answer is malformed or has the wrong number of vectors.
    """
    try:
        response = BatchEmbedContentsResponse.model_validate(body)
    except ValidationError:
        raise UpstreamError("the upstream answered in a shape that is not Gemini's") from None
    expected = 1 if isinstance(request.input, str) else len(request.input)
    if len(response.embeddings) != expected:
        raise UpstreamError(
            f"the upstream sent {len(response.embeddings)} embeddings for {expected} inputs"
        )
    data = []
    for index, item in enumerate(response.embeddings):
        vector: list[float] | str = item.values
        if request.encoding_format == "base64":
            vector = base64.b64encode(struct.pack(f"<{len(item.values)}f", *item.values)).decode()
        data.append(Embedding(index=index, embedding=vector))
    return EmbeddingResponse(data=data, model=request.model)
