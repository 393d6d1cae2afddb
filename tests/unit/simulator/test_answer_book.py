"""The simulator's answer book: fixed answers for chosen conversations, over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from gateway.simulator import SimulatorSettings, create_app
from gateway.simulator.answer_book import AnswerBook
from gateway.simulator.cli import parse_args


def _client(book: Path) -> httpx.AsyncClient:
    app = create_app(SimulatorSettings(answer_book=book))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim")


@pytest.mark.asyncio
async def test_a_booked_conversation_gets_the_books_answer_and_its_usage(tmp_path: Path) -> None:
    book = tmp_path / "book.json"
    book.write_text(
        json.dumps(
            {
                AnswerBook.key(["What is Ray?"]): "Ray is a framework for scaling Python.",
                AnswerBook.key(["What is Ray?", "And Serve?"]): "Serve serves models on Ray.",
            }
        )
    )
    async with _client(book) as client:
        first = await client.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "What is Ray?"}]},
        )
        follow = await client.post(
            "/v1/chat/completions",
            json={
                "model": "m",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "What is Ray?"},
                    {"role": "assistant", "content": "whatever was said"},
                    {"role": "user", "content": [{"type": "text", "text": "And Serve?"}]},
                ],
            },
        )
        other = await client.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "Not booked"}]},
        )
    assert (
        first.json()["choices"][0]["message"]["content"] == "Ray is a framework for scaling Python."
    )
    assert first.json()["usage"]["completion_tokens"] == 7
    assert follow.json()["choices"][0]["message"]["content"] == "Serve serves models on Ray."
    assert other.json()["choices"][0]["message"]["content"].startswith("Simulated answer from m:")


def test_a_book_that_is_not_an_object_of_strings_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"q": 1}))
    with pytest.raises(ValueError, match="object of strings"):
        AnswerBook.load(bad)


def test_the_cli_takes_an_answer_book(tmp_path: Path) -> None:
    assert (
        parse_args(["--answer-book", str(tmp_path / "b.json")]).answer_book == tmp_path / "b.json"
    )
