"""A watch on an upstream that keeps failing backs off instead of retrying every 5 s forever."""

from __future__ import annotations

from gateway.mcp.notifications import MAX_RETRY_S, retry_delay


def test_the_delay_doubles_per_failure_in_a_row_up_to_the_ceiling() -> None:
    assert [retry_delay(5.0, n) for n in range(1, 6)] == [5.0, 10.0, 20.0, 40.0, 80.0]
    assert retry_delay(5.0, 30) == MAX_RETRY_S


def test_a_watch_dropped_after_listening_is_reopened_after_the_base_delay() -> None:
    assert retry_delay(5.0, 0) == 5.0
