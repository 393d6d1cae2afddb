"""The routing status board: every router replica's published status is read back, a stale one
is left out and in time deleted, a replica's publish replaces its last, and removing takes it
off; on SQLite and PostgreSQL. The publisher puts a replica on the board at start and again
soon after a breaker transition, survives a database that fails, and takes its row off when
it closes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.routing.board import StatusBoard, StatusPublisher
from gateway.routing.breaker import BreakerState, Transition
from gateway.routing.status import AliasStatus, RoutingStatus
from gateway.storage import Database


class Clock:
    """Wall time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def status(strategy: str = "priority") -> RoutingStatus:
    return RoutingStatus(
        aliases={"gpt": AliasStatus(strategy=strategy, targets=["openai/gpt"])},
        targets=[],
        transitions=[],
    )


def test_every_replica_that_published_is_read_back(database_url: str) -> None:
    clock = Clock()
    board = StatusBoard(Database(database_url), clock=clock)
    board.publish("replica-a", status())
    clock.now += 2
    board.publish("replica-b", status("least_latency"))
    clock.now += 1
    read = board.read(max_age_s=15)
    assert [(r.replica, r.age_s) for r in read] == [("replica-a", 3.0), ("replica-b", 1.0)]
    assert read[1].status == status("least_latency")


def test_a_replica_that_stopped_publishing_is_left_out_then_deleted(database_url: str) -> None:
    clock = Clock()
    board = StatusBoard(Database(database_url), clock=clock, forget_after_s=600)
    board.publish("gone", status())
    clock.now += 20
    board.publish("alive", status())
    assert [r.replica for r in board.read(max_age_s=15)] == ["alive"]
    rows = Database(database_url).fetchall("SELECT replica FROM routing_status")
    assert len(rows) == 2  # kept a while
    clock.now += 590  # 'gone' is 610 s old now, 'alive' 590 s
    board.read(max_age_s=15)
    rows = Database(database_url).fetchall("SELECT replica FROM routing_status")
    assert rows == [("alive",)]


def test_a_publish_replaces_the_replicas_last_one(database_url: str) -> None:
    clock = Clock()
    board = StatusBoard(Database(database_url), clock=clock)
    board.publish("replica-a", status())
    clock.now += 10
    board.publish("replica-a", status("cost"))
    [read] = board.read(max_age_s=15)
    assert (read.replica, read.age_s, read.status) == ("replica-a", 0.0, status("cost"))


def test_a_removed_replica_is_off_the_board(database_url: str) -> None:
    board = StatusBoard(Database(database_url))
    board.publish("replica-a", status())
    board.publish("replica-b", status())
    board.remove("replica-a")
    board.remove("never-published")
    assert [r.replica for r in board.read(max_age_s=15)] == ["replica-b"]


def test_a_row_from_a_clock_ahead_is_never_younger_than_now(database_url: str) -> None:
    clock = Clock()
    board = StatusBoard(Database(database_url), clock=clock)
    board.publish("ahead", status())
    clock.now -= 2  # the reader's clock is behind the publisher's
    assert [r.age_s for r in board.read(max_age_s=15)] == [0.0]


async def published(board: StatusBoard, replica: str, strategy: str) -> None:
    """Until `replica`'s row shows `strategy` (a publish runs in a thread)."""
    deadline = time.monotonic() + 5
    while True:
        rows = await asyncio.to_thread(board.read, 15)
        if [r.status.aliases["gpt"].strategy for r in rows if r.replica == replica] == [strategy]:
            return
        assert time.monotonic() < deadline, f"{replica} never published {strategy}: {rows}"
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_the_publisher_publishes_at_start_and_after_a_transition(tmp_path: Path) -> None:
    board = StatusBoard(Database(f"sqlite:///{tmp_path / 'gw.db'}"))
    current = [status()]
    # The file is made (and switched to WAL) before two threads open it at once: SQLite may
    # refuse that switch to one of them ("database is locked").
    assert board.read(max_age_s=15) == []
    publisher = StatusPublisher(board, "replica-a", lambda: current[0], interval_s=3600)
    publisher.start()
    await published(board, "replica-a", "priority")
    current[0] = status("cost")
    publisher.transition(
        Transition("openai/gpt", BreakerState.CLOSED, BreakerState.OPEN, "failure rate", 0.0)
    )
    await published(board, "replica-a", "cost")  # long before the hour's interval
    await publisher.aclose()
    assert await asyncio.to_thread(board.read, 15) == []


class FailingBoard(StatusBoard):
    def publish(self, replica: str, status: RoutingStatus) -> None:
        raise OSError("database is down")


@pytest.mark.asyncio
async def test_a_failed_publish_is_logged_and_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    board = FailingBoard(Database(f"sqlite:///{tmp_path / 'gw.db'}"))
    publisher = StatusPublisher(board, "replica-a", status, interval_s=5)
    assert await publisher.publish() is False
    assert "routing status of replica replica-a not published" in caplog.text
