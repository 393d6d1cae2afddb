"""What a cache entry stores: one answer, in the shape every route's hits are rebuilt from and
that the learned phase compares fresh answers with (`gateway.cache.equivalence`)."""

from __future__ import annotations

from pydantic import BaseModel

from gateway.protocol.openai import Usage


class CachedAnswer(BaseModel):
    """What an entry stores: one assistant answer, its usage, and the target that produced
    it (to price the cost that a hit avoids)."""

    content: str
    finish_reason: str | None = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    target: str | None = None

    @classmethod
    def of(
        cls, content: str, finish_reason: str | None, usage: Usage | None, target: str | None
    ) -> CachedAnswer:
        """An answer with the token counts of its OpenAI usage (0 when none came)."""
        return cls(
            content=content,
            finish_reason=finish_reason,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            target=target,
        )

    def usage(self) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
        )
