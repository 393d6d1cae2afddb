"""Whether two answers to (nearly) the same question say the same thing.

The learned phase learns from comparing a candidate's stored answer with a fresh one. The
comparison is pluggable:
- short or structured answers (a few words, a number, JSON) must match once normalised
  (case, spacing, punctuation; JSON compared as data);
- longer answers agree when their embeddings are close (`answer_similarity`, cosine of the
  same MiniLM vectors the cache uses) and no number or date was replaced by another;
- optionally a judge's verdict, which decides when the caller brings one: the request path
  asks a model alias a constrained yes/no (`gateway/api/judging.py`, `cache.judge`, off by
  default) and sends the verdict with the observation; no verdict leaves the rules above.

Stored responses are the request path's serialised answers (`{"content": ..., ...}` JSON);
`answer_text` reads the text out of them, and takes any other string as the answer itself.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import numpy as np

from gateway.cache.keys import signature
from gateway.cache.verify import facts_replaced

# Up to this many words an answer is a label, a number or a short fact: compared exactly.
SHORT_ANSWER_WORDS = 8
# Characters of an answer embedded for the comparison (MiniLM reads ~256 tokens anyway).
EMBEDDED_CHARS = 2000


class Comparison(NamedTuple):
    """The outcome of comparing two answers, how it was decided, and why."""

    equivalent: bool
    method: str
    reason: str
    similarity: float | None = None


def answer_text(response: str) -> str:
    """The answer's text: the `content` of a serialised answer, or the string itself."""
    data = _json(response)
    if isinstance(data, dict) and isinstance(data.get("content"), str):
        return str(data["content"])
    return response


def answer_tokens(response: str) -> int:
    """Tokens the stored answer cost (prompt + completion), or its word count if unknown."""
    data = _json(response)
    if isinstance(data, dict):
        counted = int(data.get("prompt_tokens") or 0) + int(data.get("completion_tokens") or 0)
        if counted:
            return counted
    return len(answer_text(response).split())


def embedded_form(answer: str) -> str:
    """The part of an answer that is embedded for comparisons."""
    return answer[:EMBEDDED_CHARS]


def needs_vectors(a: str, b: str) -> bool:
    """Whether comparing `a` and `b` uses their embeddings (not for short/structured ones)."""
    return not (_structured(a) or _structured(b))


def compare_answers(
    cached: str,
    fresh: str,
    cached_vector: np.ndarray | None,
    fresh_vector: np.ndarray | None,
    *,
    threshold: float,
) -> Comparison:
    """The rule-based comparison (no judge): exact for short or structured answers, else
    embedding similarity >= `threshold` with no number or date replaced."""
    if not needs_vectors(cached, fresh):
        same = _canonical(cached) == _canonical(fresh)
        return Comparison(same, "exact", "same" if same else "short answers differ")
    if cached_vector is None or fresh_vector is None:
        raise ValueError("long answers are compared by their embeddings")
    similarity = float(np.dot(cached_vector.astype(np.float32), fresh_vector.astype(np.float32)))
    replaced = facts_replaced(cached, fresh)
    if replaced is not None:
        return Comparison(False, "facts", replaced, similarity)
    if similarity < threshold:
        return Comparison(False, "embedding", "answers differ in meaning", similarity)
    return Comparison(True, "embedding", "answers agree", similarity)


def _structured(answer: str) -> bool:
    text = answer.strip()
    if len(text.split()) <= SHORT_ANSWER_WORDS:
        return True
    return text[:1] in "[{" and _json(text) is not None


def _canonical(answer: str) -> str:
    data = _json(answer.strip())
    if isinstance(data, dict | list):
        return json.dumps(data, sort_keys=True, separators=(",", ":"))
    return signature(answer)


def _json(text: str) -> Any:
    if not text or text.lstrip()[:1] not in "[{":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
