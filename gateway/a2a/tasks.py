"""Who started which A2A task: a task is reachable through the gateway only by its caller.

The gateway talks to an agent with one credential of its own, so the agent sees every caller
as one client and answers `GetTask`, `CancelTask` and `SubscribeToTask` (and a send that
continues a task, `taskId`) for whatever task id it is given. The gateway closes that gap: the
first time an answer names a task, the task is recorded with the caller's user id; a call that
names a task is forwarded only for its owner. Another caller's task and one the gateway never
saw created are answered alike, with A2A's "task not found": an id reveals nothing.

Rows live in the gateway's database (SQLite embedded, PostgreSQL in a cluster, so that every
ingress replica agrees) for `a2a.task_ttl_s`; the table is created on first use. A database
failure is a 503 (`ServiceUnavailable`), never a forwarded call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from gateway.errors import ServiceUnavailable
from gateway.storage import Database

log = logging.getLogger(__name__)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS a2a_tasks (
        agent TEXT NOT NULL,
        task_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (agent, task_id)
    )""",
    "CREATE INDEX IF NOT EXISTS a2a_tasks_created ON a2a_tasks (created_at)",
]


class TaskOwners:
    """Records and checks task ownership (see the module docstring); `clock` is wall time
    (replicas on several machines compare it)."""

    def __init__(
        self, db: Database, *, ttl_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self._ttl_s = ttl_s
        self._clock = clock
        self._migrated = False

    async def claim(self, agent: str, task_id: str, user_id: str) -> None:
        """Record `user_id` as the owner of `agent`'s task, unless it has one already."""
        await self._run(self._claim, agent, task_id, user_id)

    async def owns(self, agent: str, task_id: str, user_id: str) -> bool:
        """Whether `user_id` started `agent`'s task `task_id` through the gateway."""
        owned: bool = await self._run(self._owns, agent, task_id, user_id)
        return owned

    async def _run(self, work: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.to_thread(work, *args)
        except Exception as exc:
            log.exception("the A2A task register failed")
            raise ServiceUnavailable("The A2A task register is unavailable; try again.") from exc

    def _migrate(self) -> None:
        if not self._migrated:
            self._db.migrate(SCHEMA)
            self._migrated = True

    def _claim(self, agent: str, task_id: str, user_id: str) -> None:
        self._migrate()
        now = self._clock()
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM a2a_tasks WHERE created_at < ?", (now - self._ttl_s,))
            cur.execute(
                "INSERT INTO a2a_tasks (agent, task_id, user_id, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (agent, task_id) DO NOTHING",
                (agent, task_id, user_id, now),
            )

    def _owns(self, agent: str, task_id: str, user_id: str) -> bool:
        self._migrate()
        row = self._db.fetchone(
            "SELECT user_id FROM a2a_tasks WHERE agent = ? AND task_id = ? AND created_at >= ?",
            (agent, task_id, self._clock() - self._ttl_s),
        )
        return row is not None and row[0] == user_id
