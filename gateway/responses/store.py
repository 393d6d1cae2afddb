"""Stored responses: each response's input items and its response object, in the gateway's
database (SQLite embedded, PostgreSQL in a cluster: the same SQL), scoped to the caller.

Scope: every read, listing and deletion names the caller's user id (`Principal.user_id`);
a response of another user is indistinguishable from a missing one (None, so a 404).

Bounds: a response is kept `responses.ttl_s` (an expired one reads as missing and is deleted
on the next write), and at most `responses.max_per_user` per caller (the oldest go first,
also on write). The stored text is sealed with `storage.data_key` when one is set, like the
audit trail's, so a copy of the database does not hold conversations in clear.

The table is created on first use (a database that is down when a replica starts must not
stop it). Database failures are a 503 (`ServiceUnavailable`), never a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from gateway.config import GatewayConfig
from gateway.errors import InvalidRequest, NotFound, ServiceUnavailable
from gateway.protocol.responses import (
    FunctionCallItem,
    FunctionCallOutputItem,
    MessageItem,
    Response,
)
from gateway.protocol.responses_convert import HistoryItem
from gateway.responses.config import ResponsesConfig
from gateway.storage import Database
from gateway.storage.sealing import Sealer, is_sealed

log = logging.getLogger(__name__)

InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem
_INPUT = TypeAdapter(list[InputItem])

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS stored_responses (
        response_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        previous_id TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        body TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS stored_responses_user ON stored_responses (user_id, created_at)",
    "CREATE INDEX IF NOT EXISTS stored_responses_expiry ON stored_responses (expires_at)",
]


@dataclass(frozen=True)
class StoredResponse:
    """A stored response and the input items it answered (ids filled in)."""

    response: Response
    input: list[InputItem]


class ResponseStore:
    """Keeps, reads and deletes callers' responses; see the module docstring for scope and
    bounds. `clock` is wall time (replicas on several machines compare it)."""

    def __init__(
        self,
        db: Database,
        config: ResponsesConfig,
        *,
        sealer: Sealer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._config = config
        self._sealer = sealer
        self._clock = clock
        self._migrated = False

    @classmethod
    def for_gateway(cls, config: GatewayConfig, db: Database | None) -> ResponseStore | None:
        """The store `config` asks for, or None when responses are not to be stored:
        `responses.store: false`, or the audit trail keeps no prompts (`audit.prompt: none`,
        an operator's statement that conversations must not be kept)."""
        if not config.responses.store or config.audit.prompt == "none":
            return None
        sealer = Sealer.from_keyring(config.storage.data_keyring())
        return cls(db or Database(config.storage.url), config.responses, sealer=sealer)

    async def save(self, user_id: str, stored: StoredResponse) -> None:
        """Keep `stored` for `user_id`, then drop what is past the bounds."""
        await self._run(self._save, user_id, stored)

    async def get(self, user_id: str, response_id: str) -> StoredResponse | None:
        """`user_id`'s response `response_id`, or None (missing, expired, or another's)."""
        return await self._run(self._get, user_id, response_id)

    async def delete(self, user_id: str, response_id: str) -> bool:
        """Delete `user_id`'s response `response_id`; False when there was none to delete."""
        return await self._run(self._delete, user_id, response_id)

    async def conversation(self, user_id: str, response_id: str) -> list[HistoryItem]:
        """The conversation up to and including `response_id`: for each response of its
        `previous_response_id` chain, oldest first, its input items then its output items.
        Raises `NotFound` (param `previous_response_id`) when a link is missing or another
        user's, and `InvalidRequest` when the chain is longer than `responses.max_chain`."""
        return await self._run(self._conversation, user_id, response_id)

    async def _run(self, work: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.to_thread(work, *args)
        except (NotFound, InvalidRequest):
            raise
        except Exception as exc:
            log.exception("the response store failed")
            raise ServiceUnavailable("The response store is unavailable; try again.") from exc

    def _migrate(self) -> None:
        if not self._migrated:
            self._db.migrate(SCHEMA)
            self._migrated = True

    def _save(self, user_id: str, stored: StoredResponse) -> None:
        self._migrate()
        now = self._clock()
        response_id = stored.response.id
        body = json.dumps(
            {
                "response": stored.response.wire(),
                "input": [item.model_dump(mode="json", exclude_none=True) for item in stored.input],
            },
            separators=(",", ":"),
        )
        if self._sealer is not None:
            body = self._sealer.seal(body, context=_context(response_id))
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM stored_responses WHERE expires_at < ?", (now,))
            cur.execute(
                "INSERT INTO stored_responses "
                "(response_id, user_id, previous_id, created_at, expires_at, body) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    response_id,
                    user_id,
                    stored.response.previous_response_id,
                    now,
                    now + self._config.ttl_s,
                    body,
                ),
            )
            # The newest max_per_user stay; ties on created_at broken by id, on both backends.
            cur.execute(
                "DELETE FROM stored_responses WHERE user_id = ? AND response_id NOT IN ("
                "SELECT response_id FROM stored_responses WHERE user_id = ? "
                "ORDER BY created_at DESC, response_id DESC LIMIT ?)",
                (user_id, user_id, self._config.max_per_user),
            )

    def _get(self, user_id: str, response_id: str) -> StoredResponse | None:
        self._migrate()
        row = self._db.fetchone(
            "SELECT body FROM stored_responses "
            "WHERE response_id = ? AND user_id = ? AND expires_at >= ?",
            (response_id, user_id, self._clock()),
        )
        if row is None:
            return None
        return self._parse(response_id, str(row[0]))

    def _delete(self, user_id: str, response_id: str) -> bool:
        self._migrate()
        with self._db.transaction() as cur:
            cur.execute(
                "DELETE FROM stored_responses WHERE response_id = ? AND user_id = ?",
                (response_id, user_id),
            )
            return cur.rowcount > 0

    def _conversation(self, user_id: str, response_id: str) -> list[HistoryItem]:
        turns: list[list[HistoryItem]] = []
        current: str | None = response_id
        while current is not None:
            if len(turns) >= self._config.max_chain:
                raise InvalidRequest(
                    f"The conversation is longer than {self._config.max_chain} responses.",
                    param="previous_response_id",
                )
            stored = self._get(user_id, current)
            if stored is None:
                raise NotFound(
                    f"Previous response with id '{current}' not found.",
                    param="previous_response_id",
                )
            turns.append([*stored.input, *stored.response.output])
            current = stored.response.previous_response_id
        return [item for turn in reversed(turns) for item in turn]

    def _parse(self, response_id: str, body: str) -> StoredResponse | None:
        if is_sealed(body):
            if self._sealer is None:
                raise ServiceUnavailable("Stored responses are sealed; storage.data_key is unset.")
            body = self._sealer.open(body, context=_context(response_id))
        try:
            data = json.loads(body)
            return StoredResponse(
                response=Response.model_validate(data["response"]),
                input=_INPUT.validate_python(data["input"]),
            )
        except (ValueError, KeyError, ValidationError):  # stored by a release of another shape
            log.warning("stored response %s is unreadable; treated as missing", response_id)
            return None


def _context(response_id: str) -> str:
    return f"responses:{response_id}"
