"""The building blocks of raygate's Grafana dashboards: PromQL over the metric catalogue, the
few panel shapes the dashboards use, and a dashboard assembled from titled rows of them.

Queries name their series through `series()` (the catalogue in `metrics.py`, so a renamed
metric fails the build, not a dashboard in production) or the Ray Serve metrics listed in
`SERVE_METRICS`. Windows are Grafana's own: `$__rate_interval` for rates (never shorter than
four scrapes, whatever the zoom) and `$__range` for totals over the time picked. Every panel
reads the `${datasource}` variable, so the same JSON works on any Grafana with a Prometheus.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    prometheus,
    stat,
    statetimeline,
    timeseries,
)
from grafana_foundation_sdk.builders import dashboard as grafana
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as options
from grafana_foundation_sdk.models import dashboard as model

from gateway.observability.metrics import SPECS

RATE = "$__rate_interval"
RANGE = "$__range"

# Ray Serve's own series (ray/serve/_private/deployment_state.py and replica.py, Ray 2.60),
# each tagged with its `deployment` and `application`.
REPLICAS_HEALTHY = "ray_serve_deployment_replica_healthy"  # the controller's: 1 per healthy replica
PROCESSING_MS = "ray_serve_deployment_processing_latency_ms"  # histogram, per replica
PROCESSING_NOW = "ray_serve_replica_processing_queries"  # gauge, per replica
SERVE_METRICS = (REPLICAS_HEALTHY, f"{PROCESSING_MS}_bucket", PROCESSING_NOW)

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")

Panel = timeseries.Panel | stat.Panel | bargauge.Panel | statetimeline.Panel
_P = TypeVar("_P", timeseries.Panel, stat.Panel, bargauge.Panel, statetimeline.Panel)
Row = tuple[str, Sequence[Panel]]
"""A titled band of panels, laid out left to right, wrapping at Grafana's 24 columns."""


def series(name: str) -> str:
    """The Prometheus name of catalogue metric `name` (KeyError if the catalogue lacks it)."""
    return SPECS[name].exported


def rate(metric: str, by: Sequence[str] = (), where: str = "") -> str:
    """Per-second rate of counter `metric`, summed over replicas (and labels not in `by`)."""
    return _sum(f"rate({_select(metric, where)}[{RATE}])", by)


def increase(metric: str, by: Sequence[str] = (), where: str = "") -> str:
    """How much counter `metric` grew over the dashboard's time range."""
    return _sum(f"increase({_select(metric, where)}[{RANGE}])", by)


def gauge(metric: str, by: Sequence[str], where: str = "", *, total: str = "sum") -> str:
    """Gauge `metric` per `by` (`total` across series), each series at its highest over the
    rate interval. Ray's agent drops a gauge that is not set again within two export
    intervals and Prometheus then marks it stale, so a gauge set only when it changes (a
    breaker's state, the audit queue) has gaps an instant value would fall into."""
    return f"{total} by ({', '.join(by)}) (max_over_time({_select(metric, where)}[{RATE}]))"


def quantile(q: float, histogram: str, by: Sequence[str] = (), where: str = "") -> str:
    """The `q` quantile of `histogram` (its name without `_bucket`) over recent requests."""
    return f"histogram_quantile({q}, {rate(f'{histogram}_bucket', (*by, 'le'), where)})"


def share(part: str, whole: str) -> str:
    """Counter series `part` (a selector of `whole`) as a share of `whole`."""
    return f"{rate(part)} / {rate(whole)}"


def _select(metric: str, where: str) -> str:
    return f"{metric}{{{where}}}" if where else metric


def _sum(expr: str, by: Sequence[str]) -> str:
    return f"sum by ({', '.join(by)}) ({expr})" if by else f"sum({expr})"


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a panel, and how the legend names its series."""

    expr: str
    legend: str = "__auto"


def graph(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    width: int = 12,
    stacked: bool = False,
) -> Panel:
    """A time series panel: how the queries moved over the range."""
    panel = (
        timeseries.Panel()
        .legend(common.VizLegendOptions().display_mode(options.LegendDisplayMode.LIST)
                .placement(options.LegendPlacement.BOTTOM).show_legend(True))
        .tooltip(common.VizTooltipOptions().mode(options.TooltipDisplayMode.MULTI)
                 .sort(options.SortOrder.DESCENDING))
        .fill_opacity(10)
    )  # fmt: skip
    if stacked:
        panel.stacking(common.StackingConfig().mode(options.StackingMode.NORMAL))
    return _fill(panel, title, description, unit, queries, width, instant=False)


def single(
    title: str, description: str, unit: str, query: Query, *, instant: bool = False
) -> Panel:
    """A stat panel: one number, now (or over the range: `instant` with an `increase`)."""
    panel = (
        stat.Panel()
        # A total over the range has no history to draw; a rate does.
        .graph_mode(options.BigValueGraphMode.NONE if instant else options.BigValueGraphMode.AREA)
        .color_mode(options.BigValueColorMode.VALUE)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )  # fmt: skip
    return _fill(panel, title, description, unit, [query], 6, instant=instant)


def bars(title: str, description: str, unit: str, query: Query, *, width: int = 12) -> Panel:
    """A bar gauge of totals over the range, one bar per series (an `increase` query)."""
    panel = (
        bargauge.Panel()
        .display_mode(options.BarGaugeDisplayMode.GRADIENT)
        .orientation(options.VizOrientation.HORIZONTAL)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    return _fill(panel, title, description, unit, [query], width, instant=True)


def states(title: str, description: str, query: Query, names: Sequence[tuple[str, str]]) -> Panel:
    """A state timeline of a gauge whose values 0, 1, ... mean `names` (text, colour)."""
    meanings = {
        str(value): model.ValueMappingResult(text=text, color=colour, index=value)
        for value, (text, colour) in enumerate(names)
    }
    panel = (
        statetimeline.Panel()
        .mappings([model.ValueMap(options=meanings)])
        .show_value(options.VisibilityMode.NEVER)
        .merge_values(True)
    )
    return _fill(panel, title, description, "none", [query], 24, instant=False)


def _fill(
    panel: _P,
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    width: int,
    *,
    instant: bool,
) -> _P:
    """What every panel has: title, data source, unit, size, and its queries (range, or
    instant for totals over the range)."""
    panel.title(title).description(description).datasource(DATASOURCE).unit(unit)
    panel.span(width).height(8)
    for n, query in enumerate(queries):
        target = prometheus.Dataquery().expr(query.expr).legend_format(query.legend)
        target.ref_id(chr(ord("A") + n))
        panel.with_target(target.instant() if instant else target.range())
    return panel


def dashboard(uid: str, title: str, description: str, rows: Sequence[Row]) -> dict[str, Any]:
    """The dashboard's JSON model, as Grafana stores and provisions it."""
    builder = (
        grafana.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["raygate"])
        .editable()
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .with_variable(
            grafana.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
        )
        .link(
            grafana.DashboardLink("raygate")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(["raygate"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    # Grafana links to a panel by its id (`viewPanel=`): ids must be unique and stable.
    ids = itertools.count(1)
    for name, panels in rows:
        builder.with_row(grafana.Row(name).id(next(ids)))
        for panel in panels:
            builder.with_panel(panel.id(next(ids)))
    encoded: dict[str, Any] = json.loads(JSONEncoder().encode(builder.build()))
    return encoded
