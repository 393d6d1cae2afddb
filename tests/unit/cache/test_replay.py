"""`raygate cache replay` end to end: a JSONL file and an audit export, through the CLI's
argparse wiring and the real cache (MiniLM included), then the labelled sample back."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.audit.record import AuditPrincipal, AuditRecord
from gateway.cache.cli import add_cache_commands
from gateway.cache.replay import estimate
from gateway.cache.replay_input import parse_prompt
from gateway.config import GatewayConfig

VPN = (
    "Open the self-service portal, choose VPN, then Reset password; the new password "
    "works within five minutes on every gateway."
)
LEAVE = "Employees get twenty-five days of paid leave a year, accrued monthly from the start."


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`raygate cache replay ARGV` in-process: (exit code, stdout, stderr)."""
    parser = argparse.ArgumentParser(prog="raygate")
    config = GatewayConfig.model_validate({"cache": {"isolation": "user"}})
    add_cache_commands(parser.add_subparsers(required=True), lambda args: config)
    args = parser.parse_args(["cache", "replay", *argv])
    capsys.readouterr()
    code = int(args.run(args))
    out, err = capsys.readouterr()
    return code, out, err


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code, out, err = _run(capsys, *argv)
    return code, json.loads(out) if code == 0 else err


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_replay_reports_hits_savings_and_writes_hits_to_label(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"prompt": "How do I reset my VPN password?", "answer": VPN, "model": "gpt-4o-mini",
         "user": "alice", "prompt_tokens": 9, "completion_tokens": 30},
        {"prompt": "How do I reset my VPN password?", "model": "gpt-4o-mini", "user": "alice",
         "prompt_tokens": 9, "completion_tokens": 30},
        {"prompt": "how do I reset my VPN password", "model": "gpt-4o-mini", "user": "alice"},
        {"prompt": "How do I reset my VPN password?", "model": "gpt-4o-mini", "user": "bob",
         "answer": VPN},
        {"prompt": "What is the leave policy?", "model": "gpt-4o-mini", "user": "alice"},
        {"route": "embeddings", "input": ["alpha", "beta"], "model": "text-embedding-3-small",
         "user": "alice", "answer": "[[0.1, 0.2]]"},
        {"route": "embeddings", "input": ["alpha", "beta"], "model": "text-embedding-3-small",
         "user": "alice"},
    ]  # fmt: skip
    export = _jsonl(tmp_path / "prompts.jsonl", rows)
    samples = tmp_path / "to_label.jsonl"
    code, report = _cli(capsys, str(export), "--samples", str(samples), "--price-as", "gpt-4o-mini")
    assert code == 0
    assert report["lookups"] == 7
    # alice's repeat (exact), her re-typed one (normalised), the repeated embedding (exact);
    # bob is another partition (isolation: user), the leave question was never answered.
    assert report["outcomes"] == {"exact": 2, "normalized": 1, "miss": 4}
    assert report["hit_rate"] == round(3 / 7, 4)
    # Two stored VPN answers (30 each) and the embedding (12 characters: 3 estimated tokens).
    assert report["tokens_saved"]["completion"] == 30 * 2 + 3
    assert report["usd_saved"] > 0
    assert report["records_with_estimated_tokens"] == 5
    labelled = [json.loads(line) for line in samples.read_text().splitlines()]
    assert [(s["band"], s["request"], s["label"]) for s in labelled] == [
        ("normalized", "how do I reset my VPN password", None)
    ]
    assert labelled[0]["cached_answer"] == VPN and labelled[0]["band_hits"] == 1


def test_labelled_hits_give_a_false_hit_rate_with_an_interval(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def hit(band: str, band_hits: int, label: str | None) -> dict[str, Any]:
        return {"band": band, "band_hits": band_hits, "lookups": 1000, "label": label}

    sample = [hit("0.90-0.95", 40, "wrong" if i < 2 else "right") for i in range(20)]
    sample += [hit("0.95-1.00", 100, "right") for _ in range(20)]
    sample += [hit("below 0.80", 5, None)]
    path = _jsonl(tmp_path / "labelled.jsonl", sample)
    code, result = _cli(capsys, "--labels", str(path))
    assert code == 0
    # 2 of 20 wrong in a band of 40 hits among 1000 lookups: 4 wrong hits, 0.4 %.
    assert result["false_hit_rate"] == pytest.approx(0.004)
    low, high = result["ci95"]
    assert low < 0.004 < high
    # The unlabelled band (5 hits) can only widen the interval's top.
    assert result["unlabelled_share_of_lookups"] == 0.005
    assert high >= 0.004 + 0.005
    assert result["bands"]["0.95-1.00"]["wrong"] == 0


def test_a_label_that_is_neither_right_nor_wrong_is_refused() -> None:
    with pytest.raises(ValueError, match="right or wrong"):
        estimate([{"band": "x", "band_hits": 1, "lookups": 10, "label": "maybe"}])


def test_an_audit_export_replays_its_full_and_redacted_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)
    alice = AuditPrincipal(user_id="alice", auth_method="api_key", groups=["eng"])

    def record(
        i: int,
        prompt: str,
        response: str | None,
        mode: str = "full",
        route: str = "/v1/chat/completions",
    ) -> dict[str, Any]:
        return AuditRecord(
            ts=start + timedelta(minutes=i),
            principal=alice,
            route=route,
            model_requested="gpt-4o-mini",
            tokens_in=12,
            tokens_out=20,
            prompt_mode=mode,  # type: ignore[arg-type]
            prompt=prompt,
            response_mode=mode,  # type: ignore[arg-type]
            response=response,
        ).model_dump(mode="json")

    conversation = (
        f"system: Be brief.\nuser: What is the leave policy?\nassistant: {LEAVE}\n"
        "user: And for contractors?"
    )
    records = [
        record(0, "user: How do I reset my VPN password?", VPN),
        record(1, "user: How do I reset my VPN password?", VPN, mode="redacted"),
        record(2, "3f2a...", None, mode="hash"),
        record(3, conversation, "Contractors follow their contract."),
        record(4, conversation, "Contractors follow their contract."),
        record(5, "user: Where is the cafeteria?", "Level 2.", route="/v1/responses"),
        record(6, "user: Where is the cafeteria?", "Level 2.", route="/v1/responses"),
    ]
    export = tmp_path / "audit.json"
    export.write_text(json.dumps(records))
    code, report = _cli(capsys, str(export))
    assert code == 0
    assert report["records_skipped"] == {"prompt not kept (hash or none mode)": 1}
    assert report["outcomes"] == {"miss": 3, "exact": 3}  # the Responses API's too
    # Unpriced without --price-as? gpt-4o-mini is in the packaged prices.
    assert report["hits_without_a_price"] == 0 and report["usd_saved"] > 0


def test_an_audit_prompt_reads_back_as_chat_messages() -> None:
    assert parse_prompt(
        "system: Be brief.\nuser: line one\nline two\nassistant: ok\nuser: next"
    ) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "line one\nline two"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "next"},
    ]


def test_replay_without_an_export_or_labels_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _cli(capsys)
    assert code == 2 and "give an export" in err


def test_a_progress_bar_goes_to_stderr_and_leaves_the_report_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAYGATE_PROGRESS", raising=False)
    asked = {"prompt": "How do I reset my VPN password?", "model": "gpt-4o-mini", "user": "al"}
    export = str(_jsonl(tmp_path / "prompts.jsonl", [{**asked, "answer": VPN}, asked, asked]))
    code, plain, err = _run(capsys, export)
    assert code == 0 and "replay:" not in err  # stderr is no terminal here: no bar
    code, out, err = _run(capsys, export, "--progress")
    assert code == 0 and out == plain
    assert "replay: 100%" in err and "3/3" in err
