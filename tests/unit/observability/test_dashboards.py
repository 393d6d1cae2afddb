"""The Grafana dashboards: the committed JSON is what the builder makes, every panel queries
series that exist (the catalogue's, or Ray Serve's own), Prometheus parses every query, and
`raygate dashboards` writes them and pushes them through Grafana's API."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import main
from gateway.observability.dashboards import build_all, panel_queries, render
from gateway.observability.metrics import CATALOGUE
from gateway.observability.panels import SERVE_METRICS
from tests.servers.grafana import FakeGrafana
from tests.support import require_binary

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "cluster" / "grafana" / "dashboards"
DASHBOARDS = build_all()

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_KEYWORDS |= {"and", "or", "unless"}


def _catalogue_series() -> set[str]:
    names = set()
    for spec in CATALOGUE:
        suffixes = ("_bucket", "_sum", "_count") if spec.kind == "histogram" else ("",)
        names |= {spec.exported + suffix for suffix in suffixes}
    return names


def metric_names(expr: str) -> set[str]:
    """The series a PromQL expression selects: identifiers that are not functions,
    keywords, label names (inside braces or grouping clauses) or range durations."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    found = re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", expr)
    return {m.group(1) for m in found} - _KEYWORDS


def _all_queries(window: str | None = None) -> list[tuple[str, str, str]]:
    return [(d["uid"], t, e) for d in DASHBOARDS for t, e in panel_queries(d, window)]


def test_the_committed_json_is_what_the_builder_makes() -> None:
    shipped = {path.name: path.read_text() for path in SHIPPED.glob("*.json")}
    built = {f"{d['uid']}.json": render(d) for d in DASHBOARDS}
    assert shipped == built, "regenerate with `raygate dashboards write`"


def test_six_dashboards_with_unique_stable_uids() -> None:
    uids = [d["uid"] for d in DASHBOARDS]
    assert uids == [
        "raygate-overview",
        "raygate-cost",
        "raygate-cache",
        "raygate-policy",
        "raygate-upstreams",
        "raygate-local-models",
    ]


def test_every_panel_has_a_query_on_the_datasource_variable() -> None:
    for dashboard in DASHBOARDS:
        panels = [p for p in dashboard["panels"] if p["type"] != "row"]
        assert panels, dashboard["uid"]
        for panel in panels:
            assert panel["targets"], f"{dashboard['uid']}: {panel['title']} has no query"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        variables = dashboard["templating"]["list"]
        assert [(v["name"], v["type"], v["query"]) for v in variables] == [
            ("datasource", "datasource", "prometheus")
        ]


def test_panel_ids_are_unique_within_each_dashboard() -> None:
    for dashboard in DASHBOARDS:
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), dashboard["uid"]


def test_every_query_selects_only_known_series() -> None:
    known = _catalogue_series() | set(SERVE_METRICS)
    for uid, title, expr in _all_queries():
        names = metric_names(expr)
        assert names, f"{uid}: {title}: no series in {expr}"
        assert names <= known, f"{uid}: {title}: unknown {names - known}"


def test_every_catalogue_metric_is_on_some_dashboard() -> None:
    used = {name for _, _, expr in _all_queries() for name in metric_names(expr)}
    for spec in CATALOGUE:
        assert used & {spec.exported, f"{spec.exported}_bucket"}, f"{spec.name} is on none"


def test_metric_names_reads_series_not_labels_or_functions() -> None:
    expr = (
        'sum by (phase) (rate(a_total{phase!="by"}[5m])) / ignoring(phase) group_left '
        "sum(rate(b_total[5m])) or vector(0) * histogram_quantile(0.9, c_bucket)"
    )
    assert metric_names(expr) == {"a_total", "b_total", "c_bucket"}


def test_queries_keep_grafanas_windows_until_a_window_is_given() -> None:
    raw = [expr for _, _, expr in _all_queries()]
    assert any("$__rate_interval" in expr for expr in raw)
    assert any("$__range" in expr for expr in raw)
    assert not any("$" in expr for _, _, expr in _all_queries("5m"))


def test_a_variable_without_a_value_is_named() -> None:
    dashboard: dict[str, Any] = {
        "panels": [{"title": "Mine", "targets": [{"expr": "rate(x_total[$window])"}]}]
    }
    with pytest.raises(ValueError, match=r"Mine: no value for \$window"):
        panel_queries(dashboard, "5m")


def test_prometheus_parses_every_query(tmp_path: Path) -> None:
    """promtool parses each query as a recording rule: a typo fails here, not in Grafana."""
    promtool = require_binary("promtool", "/usr/bin/promtool")
    rules = [
        {"record": f"raygate:check:{n}", "expr": expr}
        for n, (_, _, expr) in enumerate(_all_queries("5m"))
    ]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_provisioning_provider_reads_a_dashboards_folder() -> None:
    provisioning = ROOT / "cluster" / "grafana" / "provisioning"
    providers = yaml.safe_load((provisioning / "dashboards.yaml").read_text())["providers"]
    assert [(p["type"], bool(p["options"]["path"])) for p in providers] == [("file", True)]
    sources = yaml.safe_load((provisioning / "datasources.yaml").read_text())["datasources"]
    assert [s["type"] for s in sources] == ["prometheus"]


def test_write_puts_one_file_per_dashboard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dashboards", "write", "--out", str(tmp_path / "out")]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == sorted(f"{d['uid']}.json" for d in DASHBOARDS)
    assert len(capsys.readouterr().out.splitlines()) == 6


def test_push_saves_every_dashboard_into_a_new_folder_overwriting() -> None:
    with FakeGrafana(token="glsa_test") as grafana:
        args = ["dashboards", "push", "--url", grafana.url, "--token", "glsa_test"]
        assert main([*args, "--folder", "AI gateway"]) == 0
        assert grafana.folders == {"ai-gateway": "AI gateway"}
        assert sorted(grafana.dashboards) == sorted(d["uid"] for d in DASHBOARDS)
        for uid, saved in grafana.dashboards.items():
            assert (saved["folderUid"], saved["overwrite"]) == ("ai-gateway", True)
            assert saved["dashboard"] == next(d for d in DASHBOARDS if d["uid"] == uid)

        assert main([*args, "--folder", "AI gateway"]) == 0  # again: the same folder, updated
    assert grafana.folders == {"ai-gateway": "AI gateway"}
    assert {saved["version"] for saved in grafana.dashboards.values()} == {2}


def test_push_uses_an_existing_folder_and_the_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GRAFANA_TOKEN", "glsa_env")
    with FakeGrafana(token="glsa_env", folders={"ops-1": "raygate"}) as grafana:
        assert main(["dashboards", "push", "--url", grafana.url]) == 0
    assert ("POST", "/api/folders") not in grafana.calls
    assert {saved["folderUid"] for saved in grafana.dashboards.values()} == {"ops-1"}


def test_push_signs_in_with_a_password_in_the_url() -> None:
    with FakeGrafana(login=("admin", "s3cret")) as grafana:
        url = grafana.url.replace("http://", "http://admin:s3cret@")
        assert main(["dashboards", "push", "--url", url]) == 0
    assert len(grafana.dashboards) == len(DASHBOARDS)


def test_push_with_a_wrong_token_fails_with_grafanas_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with FakeGrafana(token="glsa_right") as grafana:
        status = main(["dashboards", "push", "--url", grafana.url, "--token", "glsa_wrong"])
    assert status == 1
    assert "Invalid API key" in capsys.readouterr().err
    assert grafana.dashboards == {}


def test_push_to_nothing_listening_fails_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with FakeGrafana() as grafana:
        url = grafana.url  # a port that was just released
    assert main(["dashboards", "push", "--url", url, "--token", "t"]) == 1
    assert "raygate dashboards push:" in capsys.readouterr().err
