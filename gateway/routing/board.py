"""The routing status board: each router replica's breakers and health, in the gateway's
database, so that an operator sees every replica's view (`GET /admin/routing/replicas`).

Serve cannot ask every replica of a deployment (a handle reaches one), so each router replica
publishes its own `RoutingStatus` instead (`StatusPublisher`): one row per replica, replaced
every `routing.status_publish_interval_s` and soon after each breaker transition, removed when
the replica shuts down. Readers take the rows published within a few intervals; a replica that
died without removing its row drops out of the answer, and its row is deleted once it is far
older than that. The same SQL runs on SQLite (one machine) and PostgreSQL (a cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from pydantic import ValidationError

from gateway.routing.breaker import Transition
from gateway.routing.status import ReplicaStatus, RoutingStatus
from gateway.storage import Database

log = logging.getLogger(__name__)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS routing_status (
        replica TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
]


class StatusBoard:
    """Publishes, reads and removes router replicas' statuses in the gateway's database.

    The table is created on first use, not here: a database that is down when a replica
    starts must not stop the replica. Calls block; async code runs them with
    `asyncio.to_thread`. `clock` is wall time, since replicas on different machines compare
    their timestamps; rows older than `forget_after_s` are deleted when the board is read.
    """

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        forget_after_s: float = 3600.0,
    ) -> None:
        self._db = db
        self._clock = clock
        self._forget_after_s = forget_after_s
        self._migrated = False

    def publish(self, replica: str, status: RoutingStatus) -> None:
        """Put `status` on the board as `replica`'s, replacing what it published before."""
        self._migrate()
        self._db.execute(
            "INSERT INTO routing_status (replica, status, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (replica) DO UPDATE "
            "SET status = excluded.status, updated_at = excluded.updated_at",
            (replica, status.model_dump_json(), self._clock()),
        )

    def read(self, max_age_s: float) -> list[ReplicaStatus]:
        """The statuses published within `max_age_s`, by replica; deletes the forgotten ones."""
        self._migrate()
        now = self._clock()
        with self._db.transaction() as cursor:
            forgotten = now - max(self._forget_after_s, max_age_s)
            cursor.execute("DELETE FROM routing_status WHERE updated_at < ?", (forgotten,))
            cursor.execute(
                "SELECT replica, status, updated_at FROM routing_status "
                "WHERE updated_at >= ? ORDER BY replica",
                (now - max_age_s,),
            )
            rows = cursor.fetchall()
        entries = (_entry(str(r), str(s), now - float(at)) for r, s, at in rows)
        return [entry for entry in entries if entry is not None]

    def remove(self, replica: str) -> None:
        """Take `replica`'s row off the board (it is shutting down)."""
        self._migrate()
        self._db.execute("DELETE FROM routing_status WHERE replica = ?", (replica,))

    def _migrate(self) -> None:
        # Idempotent: two threads racing here both run CREATE TABLE IF NOT EXISTS.
        if not self._migrated:
            self._db.migrate(SCHEMA)
            self._migrated = True


def _entry(replica: str, status: str, age_s: float) -> ReplicaStatus | None:
    try:
        parsed = RoutingStatus.model_validate_json(status)
    except ValidationError:  # published by a release whose status had another shape
        log.warning("routing status of replica %s is unreadable; left out", replica)
        return None
    # Another machine's clock may run ahead: a row is never younger than now.
    return ReplicaStatus(replica=replica, age_s=max(0.0, age_s), status=parsed)


class StatusPublisher:
    """Keeps one router replica's row on the board: published at `start()`, then every
    `interval_s`, and soon after each breaker transition (`transition`, a router listener);
    removed by `aclose()`.

    The board is for operators and never stands in routing's way: a publish that fails is
    logged and tried again at the next interval, and a transition only wakes the publishing
    task, so the breaker that called it is not held up by the database.
    """

    def __init__(
        self,
        board: StatusBoard,
        replica: str,
        status: Callable[[], RoutingStatus],
        *,
        interval_s: float,
    ) -> None:
        self.replica = replica
        self._board = board
        self._status = status
        self._interval_s = interval_s
        self._due = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start publishing, from the replica's event loop."""
        self._task = asyncio.create_task(self._run(), name=f"routing-status-{self.replica}")

    def transition(self, _transition: Transition) -> None:
        """A breaker changed state: publish soon."""
        self._due.set()

    async def publish(self) -> bool:
        """Publish this replica's status now; whether the board took it."""
        try:
            await asyncio.to_thread(self._board.publish, self.replica, self._status())
        except Exception:  # the database is down or refused: the next interval tries again
            log.warning(
                "routing status of replica %s not published; trying again in %s s",
                self.replica,
                self._interval_s,
                exc_info=True,
            )
            return False
        return True

    async def aclose(self) -> None:
        """Stop publishing and take the row off the board.

        A publish under way is let finish first (a thread cannot be interrupted), so that it
        cannot put the row back after it was removed.
        """
        self._closing = True
        self._due.set()
        if self._task is not None:
            await self._task
        try:
            await asyncio.to_thread(self._board.remove, self.replica)
        except Exception:  # the row is left to age out of the answer
            log.warning("routing status of replica %s not removed", self.replica, exc_info=True)

    async def _run(self) -> None:
        while not self._closing:
            self._due.clear()  # a transition during the publish below wakes the next one
            await self.publish()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._due.wait(), self._interval_s)
