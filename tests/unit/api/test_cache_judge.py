"""A model as the learned cache phase's judge (`cache.judge`, gateway/api/judging.py).

In process: the API over a real router whose upstream is the simulator with an answer book
(so the two answers, and the judge's reply to the exact prompt, are known), and a real cache
replica with MiniLM. Every semantic candidate is checked (`exploration_rate: 1`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.api.judging import INSTRUCTIONS, judge_prompt, verdict_of
from gateway.cache.embedder import Embedder
from gateway.config import parse_config
from gateway.simulator import SimulatorSettings
from gateway.simulator.answer_book import AnswerBook
from tests.support.gateway import in_process_gateway

CONFIG = """
auth:
  trusted_header: {trusted_proxies: [127.0.0.1/32]}
storage: {url: "sqlite:///%(db)s"}
audit: {enabled: true}
cache:
  isolation: user
  exploration_rate: 1  # every candidate is checked against a fresh answer
%(judge)s
providers:
  simulator: {preset: simulator, base_url: "http://sim/v1"}
models:
  sim-small: {targets: [simulator/sim-small]}
  judge: {targets: [simulator/sim-small]}
"""

ASKED = "How do I rotate an AWS access key?"
CHECKED = "What are the steps to rotate an AWS access key?"
# Two wordings of one answer: the rules (answer embeddings, fact checks) call them the same.
STORED = (
    "Create a second access key in IAM, switch your applications over to it, then "
    "deactivate the old key and delete it once nothing uses it."
)
FRESH = (
    "In IAM, create a new access key, move your applications to the new key, then "
    "deactivate the old access key and delete it when nothing uses it any more."
)
HEADERS = {"x-forwarded-user": "alice"}


@pytest.mark.parametrize(
    ("reply", "expected"),
    [("yes", True), ("Yes.", True), (" NO, they differ", False), ("no", False),
     ("maybe", None), ("", None), ("Yesterday", None), ("**No**", False)],
)  # fmt: skip
def test_a_reply_is_a_verdict_only_when_it_starts_with_yes_or_no(
    reply: str, expected: bool | None
) -> None:
    assert verdict_of(reply) is expected


def test_the_judge_must_be_a_model_alias() -> None:
    with pytest.raises(ValueError, match=r"cache\.judge\.model 'nobody' is not a model alias"):
        parse_config(CONFIG % {"db": "x.db", "judge": "  judge: {model: nobody}"})


async def _check(
    tmp_path: Path, embedder: Embedder, judge: str | None, reply: str
) -> dict[str, Any]:
    """Ask ASKED (stored), then CHECKED (checked against ASKED's entry, answered fresh);
    the judge, when there is one, replies `reply` to exactly that check."""
    prompt = judge_prompt(CHECKED, STORED, FRESH, limit=4000)
    book = {
        AnswerBook.key([ASKED]): STORED,
        AnswerBook.key([CHECKED]): FRESH,
        AnswerBook.key([prompt]): reply,
    }
    (tmp_path / "book.json").write_text(json.dumps(book))
    setting = f"  judge: {{model: {judge}}}" if judge else ""
    config = CONFIG % {"db": tmp_path / "raygate.db", "judge": setting}
    sim = SimulatorSettings(seed=3, answer_book=tmp_path / "book.json")
    async with in_process_gateway(config, embedder=embedder, sim_settings=sim) as gw:
        await gw.chat(ASKED, headers=HEADERS)
        checked = await gw.chat(CHECKED, headers=HEADERS)
        assert checked.headers["x-raygate-cache"] == "miss"  # answered fresh, then compared
        assert gw.pipeline.cache is not None
        await gw.pipeline.cache.drain()
        stats = await gw.pipeline.cache.backend.stats()
        outcomes = {kind: n for kind, n in stats["observations"].items() if n}
        sent = [r["json"]["messages"] for r in await gw.sim.requests() if r["json"]]
        records = await gw.records()
    spent = sum(stats["exploration_tokens"].values())
    judged = sum(1 for messages in sent if messages[0]["content"] == INSTRUCTIONS)
    return {"outcomes": outcomes, "spent": spent, "judged": judged, "records": records}


@pytest.mark.asyncio
async def test_without_a_judge_the_rules_call_the_two_wordings_the_same(
    tmp_path: Path, embedder: Embedder
) -> None:
    seen = await _check(tmp_path, embedder, None, "no")
    assert seen["outcomes"] == {"equivalent": 1}
    assert seen["judged"] == 0


@pytest.mark.asyncio
async def test_the_judges_verdict_decides_the_check_and_its_call_is_counted(
    tmp_path: Path, embedder: Embedder
) -> None:
    seen = await _check(tmp_path, embedder, "judge", "No.")
    assert seen["outcomes"] == {"different": 1}  # the judge overruled the rules
    assert seen["judged"] == 1
    (record,) = [r for r in seen["records"] if r["admin_action"] == "cache.judge"]
    assert record["principal"]["user_id"] == "raygate:cache-judge" and record["status"] == 200
    assert record["admin_target"].startswith("cache-entry:")
    assert record["tokens_in"] > 0 and record["cost_usd"] > 0
    # The check's spend includes the judge's tokens, on top of the fresh answer's.
    assert seen["spent"] > record["tokens_in"] + record["tokens_out"]


@pytest.mark.asyncio
async def test_a_reply_that_is_no_verdict_leaves_the_check_to_the_rules(
    tmp_path: Path, embedder: Embedder
) -> None:
    seen = await _check(tmp_path, embedder, "judge", "Both answers describe key rotation.")
    assert seen["judged"] == 1
    assert seen["outcomes"] == {"equivalent": 1}
