"""Progress bars: on stderr, only when asked for or watched, never on stdout."""

from __future__ import annotations

import argparse
import io
import sys

import pytest

from gateway import progress
from gateway.progress import add_progress_option, draws, progress_bar, reported, tracked


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(progress.ENV, raising=False)


def test_a_forced_bar_shows_the_count_against_the_total_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert list(tracked(range(3), "work", unit="record", show=True)) == [0, 1, 2]
    out, err = capsys.readouterr()
    assert out == ""
    assert "work" in err and "100%" in err and "3/3" in err and "record/s" in err


def test_without_a_terminal_nothing_is_drawn(capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bar("work", total=2) as advance:
        advance(2)
    assert capsys.readouterr().err == ""


def test_on_a_terminal_a_quick_job_draws_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    list(tracked(range(3), "work"))
    assert terminal.getvalue() == ""


def test_on_a_terminal_a_job_past_the_quiet_time_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(progress, "_QUIET_S", 0.0)
    list(tracked(range(3), "work"))
    assert "3/3" in terminal.getvalue()


def test_the_environment_forces_bars_and_the_flag_outranks_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(progress.ENV, "1")
    assert draws() and not draws(False)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    monkeypatch.setenv(progress.ENV, "0")
    assert not draws() and draws(True)


def test_an_environment_value_other_than_1_or_0_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(progress.ENV, "yes")
    with pytest.raises(ValueError, match=progress.ENV):
        draws()


def test_reported_tells_progress_as_each_item_is_done() -> None:
    told: list[int] = []
    seen = [(item, len(told)) for item in reported("abc", told.append)]
    assert seen == [("a", 0), ("b", 1), ("c", 2)] and told == [1, 1, 1]


def test_the_option_is_on_off_or_unsaid() -> None:
    parser = argparse.ArgumentParser()
    add_progress_option(parser)
    said = [parser.parse_args(argv).progress for argv in ([], ["--progress"], ["--no-progress"])]
    assert said == [None, True, False]
