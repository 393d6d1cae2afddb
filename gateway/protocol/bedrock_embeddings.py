"""OpenAI embedding requests onto Bedrock's InvokeModel bodies for the embedding families it
hosts, and the answers back.

* Amazon Titan Text Embeddings (`amazon.titan-embed-text-*`): one text per call,
  `{"inputText", "dimensions"?}` -> `{"embedding", "inputTextTokenCount"}`.
* Cohere Embed on Bedrock (`cohere.embed-*`): a batch per call, `{"texts", "input_type",
  "embedding_types": ["float"], "output_dimension"?}` -> `{"embeddings": [[...]]}` or
  `{"embeddings": {"float": [[...]]}}`; Bedrock reports the token count in a header.
"""

from __future__ import annotations

from typing import Any, Literal

from gateway.errors import UnsupportedParameter, UpstreamError
from gateway.protocol.cohere import DEFAULT_INPUT_TYPE
from gateway.protocol.openai import EmbeddingRequest

Family = Literal["titan", "cohere"]


def embedding_family(model_id: str) -> Family:
    """Which body a Bedrock embedding model takes; `UnsupportedParameter` for others."""
    base = model_id.rsplit("/", 1)[-1]  # an ARN ends in the model id
    for prefix in ("us.", "eu.", "apac.", "us-gov.", "global.", "jp.", "au.", "ca."):
        base = base.removeprefix(prefix)
    if base.startswith("amazon.titan-embed"):
        return "titan"
    if base.startswith("cohere.embed"):
        return "cohere"
    raise UnsupportedParameter(
        f"Bedrock embedding model {model_id!r} is neither Titan nor Cohere Embed", param="model"
    )


def texts_of(req: EmbeddingRequest) -> list[str]:
    """The request's input as texts; token-id inputs are refused."""
    inputs = [req.input] if isinstance(req.input, str) else req.input
    if not all(isinstance(text, str) for text in inputs):
        raise UnsupportedParameter("Bedrock embeds text only, not token ids", param="input")
    return [str(text) for text in inputs]


def titan_body(text: str, req: EmbeddingRequest) -> dict[str, Any]:
    """The InvokeModel body for one text on a Titan embedding model."""
    body: dict[str, Any] = {"inputText": text}
    if req.dimensions is not None:
        body["dimensions"] = req.dimensions
    return body


def titan_vector(body: Any) -> tuple[list[float], int]:
    """The vector and token count of a Titan answer."""
    vector = body.get("embedding") if isinstance(body, dict) else None
    if not isinstance(vector, list):
        raise UpstreamError("the upstream answered in a shape that is not Titan's")
    return vector, int(body.get("inputTextTokenCount") or 0)


def cohere_body(texts: list[str], req: EmbeddingRequest) -> dict[str, Any]:
    """The InvokeModel body for a batch of texts on a Cohere Embed model."""
    body: dict[str, Any] = {
        "texts": texts,
        "input_type": (req.model_extra or {}).get("input_type", DEFAULT_INPUT_TYPE),
        "embedding_types": ["float"],
    }
    if req.dimensions is not None:
        body["output_dimension"] = req.dimensions
    return body


def cohere_vectors(body: Any, expected: int) -> list[list[float]]:
    """The float vectors of a Cohere Embed answer (either of its shapes)."""
    embeddings = body.get("embeddings") if isinstance(body, dict) else None
    vectors = embeddings.get("float") if isinstance(embeddings, dict) else embeddings
    if not isinstance(vectors, list) or len(vectors) != expected:
        raise UpstreamError(f"the upstream did not send {expected} float embeddings")
    return vectors
