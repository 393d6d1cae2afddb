"""A model as the learned cache phase's judge (`cache.judge`, off by default).

When the cache checks a candidate against the fresh answer a request got (a shadow or an
observed exploration), the rules compare the two answers: exactly when short or structured,
by their embeddings and the fact checks otherwise (`gateway/cache/equivalence.py`). Rules
misjudge some pairs (two right answers worded apart, or one wrong number in a long answer).
With `cache.judge.model` set, the ingress first asks that alias (any model the gateway
routes: a colocated vLLM model keeps the comparison in the cluster) a constrained question:
do these two answers to this question say the same, yes or no. Its verdict goes to the cache
replica with the observation and decides it; no verdict (a failure, a timeout, an answer that
is neither yes nor no) leaves the decision to the rules, as without a judge.

The call is the gateway's own: it is routed like any request to the alias (fallbacks and
breakers apply), never cached, charged to no user, counted with the check's spend (its
tokens are added to the exploration's), and audited (`admin_action` `cache.judge`,
`admin_target` the entry checked) with its cost.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid

from gateway.accounting.pricing import PriceTable
from gateway.api.backend import Upstream
from gateway.api.exchange import Exchange
from gateway.audit.writer import AuditWriter
from gateway.cache.config import JudgeConfig
from gateway.cache.equivalence import answer_text
from gateway.cache.lookup import Exploration
from gateway.errors import GatewayError
from gateway.identity.principal import Principal
from gateway.protocol.openai import ChatCompletionRequest, ChatMessage
from gateway.routing.routed import Routed

log = logging.getLogger(__name__)

JUDGE_PRINCIPAL = Principal(user_id="raygate:cache-judge", auth_method="internal")

INSTRUCTIONS = (
    "You check a cache of answers. You are given a question and two answers to it. Reply "
    "with one word: yes if both answers give the same information (wording may differ), no "
    "if they differ in any fact, number, name, date, step or conclusion."
)


def judge_prompt(question: str, cached: str, fresh: str, *, limit: int) -> str:
    """The user turn the judge is asked: the question and both answers, each cut to `limit`
    characters."""
    return (
        f"Question:\n{question}\n\nAnswer A:\n{cached[:limit]}\n\nAnswer B:\n{fresh[:limit]}"
        "\n\nDo A and B give the same information? Reply yes or no."
    )


def verdict_of(reply: str) -> bool | None:
    """yes -> True, no -> False, from the reply's first word; anything else -> None."""
    word = re.match(r"\W*([a-z]+)", reply.lower())
    if word is None:
        return None
    return {"yes": True, "no": False}.get(word.group(1))


class AnswerJudge:
    """Asks `settings.model` whether a checked candidate's answer equals the fresh one."""

    def __init__(
        self,
        settings: JudgeConfig,
        upstream: Upstream,
        prices: PriceTable,
        audit: AuditWriter | None,
    ) -> None:
        if settings.model is None:
            raise ValueError("a judge needs cache.judge.model")
        self.model = settings.model
        self._settings = settings
        self._upstream = upstream
        self._prices = prices
        self._audit = audit

    async def verdict(self, exploration: Exploration, fresh: str) -> tuple[bool | None, int]:
        """The judge's verdict on `exploration`'s stored answer against `fresh` (None: none
        given), and the tokens its call spent."""
        prompt = judge_prompt(
            exploration.text,
            answer_text(exploration.answer),
            fresh,
            limit=self._settings.max_answer_chars,
        )
        asked = ChatCompletionRequest(
            model=self.model,
            messages=[
                ChatMessage(role="system", content=INSTRUCTIONS),
                ChatMessage(role="user", content=prompt),
            ],
            temperature=0,
            max_tokens=3,
        )
        call = Exchange(
            request_id=f"req_{uuid.uuid4().hex}",
            path="/v1/chat/completions",
            client_address=None,
            principal=JUDGE_PRINCIPAL,
            model=self.model,
            prompt=prompt,
            admin_action="cache.judge",
            admin_target=f"cache-entry:{exploration.entry_id}",
        )
        verdict: bool | None = None
        try:
            routed = await asyncio.wait_for(
                self._upstream.chat(call, asked), self._settings.timeout_s
            )
            if not isinstance(routed, Routed):  # unstreamed requests are answered whole
                raise TypeError(f"the judge was answered by {type(routed)}")
            call.status = 200
            call.note_answer(routed.response)
            if call.usage is not None:
                call.cost_usd = self._prices.cost_of_usage(routed.route.target, call.usage)
            choices = routed.response.choices
            verdict = verdict_of(choices[0].message.text()) if choices else None
            if verdict is None:
                log.info("the cache judge answered neither yes nor no; the rules decide")
        except GatewayError as exc:
            call.status, call.error_code = exc.status, exc.code
        except TimeoutError:
            call.status, call.error_code = 504, "timeout"
        except Exception:
            log.exception("asking the cache judge failed; the rules decide")
            call.status, call.error_code = 500, "internal_error"
        if self._audit is not None:
            await self._audit.record(call.record())
        tokens = (call.tokens_in or 0) + (call.tokens_out or 0)
        return verdict, tokens
