"""Fixed answers for chosen conversations: an upstream whose answers carry meaning.

The simulator's own answers echo the question, so two paraphrases get two different answers
and a cache cannot tell a right hit from a wrong one. With an answer book, the simulator
answers each listed conversation with the book's text instead (the cache benchmarks give
every paraphrase of a question its family's answer). A conversation is named by its user
turns, in order (`AnswerBook.key`); a conversation not in the book gets the usual answer.

The book is a JSON object `{key: answer}` in a file (`--answer-book FILE`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_SEPARATOR = "\n\u241e\n"  # a record separator no question contains


class AnswerBook:
    """Answers keyed by a conversation's user turns."""

    def __init__(self, answers: Mapping[str, str]) -> None:
        self._answers = dict(answers)

    def __len__(self) -> int:
        return len(self._answers)

    @staticmethod
    def key(user_turns: Sequence[str]) -> str:
        """The book's key for a conversation with these user turns (oldest first)."""
        return _SEPARATOR.join(user_turns)

    @classmethod
    def load(cls, path: str | Path) -> AnswerBook:
        """A book from a JSON file holding `{key: answer}`."""
        data = json.loads(Path(path).read_text())
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise ValueError(f"{path}: an answer book is a JSON object of strings")
        return cls(data)

    def answer_for(self, messages: Any) -> str | None:
        """The book's answer for an OpenAI-style `messages` list, if the book has one."""
        if not isinstance(messages, list):
            return None
        turns = [
            _text(m.get("content"))
            for m in messages
            if isinstance(m, dict) and m.get("role") == "user"
        ]
        return self._answers.get(self.key(turns)) if turns else None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""
