"""raygate's Grafana dashboards, built in code: overview, cost and savings, cache, policy and
security, upstream health, local models.

The JSON under `cluster/grafana/dashboards/` is what `raygate dashboards write` makes of this
module, committed so that Grafana can provision it from files; a unit test keeps the two
equal. `panel_queries` reads the PromQL back out of that JSON, so the tests that run each
query against a real Prometheus check exactly what ships.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.observability.panels import (
    PROCESSING_MS,
    PROCESSING_NOW,
    REPLICAS_HEALTHY,
    Query,
    bars,
    dashboard,
    gauge,
    graph,
    increase,
    quantile,
    rate,
    series,
    share,
    single,
    states,
)

REQUESTS = series("raygate_requests")
LATENCY = series("raygate_request_latency_ms")
OVERHEAD = series("raygate_overhead_ms")
TTFT = series("raygate_ttft_ms")
TOKENS = series("raygate_tokens")
COST = series("raygate_cost_usd")
AVOIDED = series("raygate_cost_avoided_usd")
CACHE_REQUESTS = series("raygate_cache_requests")
DECISIONS = series("raygate_policy_decisions")
REFUSALS = series("raygate_refusals")
FAILURES = series("raygate_upstream_failures")
AUDIT_QUEUE = series("raygate_audit_queue_depth")
AUDIT_LAG = series("raygate_audit_write_lag_ms")
AUDIT_FAILURES = series("raygate_audit_write_failures")
BREAKER_STATE = series("raygate_breaker_state")
BREAKER_TRIPS = series("raygate_breaker_trips")
LOOKUPS = series("raygate_cache_lookups")
REJECTED = series("raygate_cache_rejected_by_verification")
EXPLORATIONS = series("raygate_cache_explorations")
OBSERVATIONS = series("raygate_cache_observations")
IN_FLIGHT = series("raygate_local_model_in_flight")
LOCAL_REQUESTS = series("raygate_local_model_requests")

SERVER_ERROR = 'status=~"5.."'
CLIENT_ERROR = 'status=~"4.."'
HITS = 'phase=~"exact|normalized|semantic"'
LOOKED_UP = 'phase!="bypass"'  # a bypass never asked the cache
LOCAL_TARGET = 'target=~"local/.*"'
LOCAL_DEPLOYMENT = 'deployment=~"LocalModel:.*"'  # local_models.deployment.deployment_name
PER_HOUR = " * 3600"


def _latencies(histogram: str, where: str = "") -> list[Query]:
    """p50, p95 and p99 of `histogram`: the typical request, and the slow ones."""
    return [Query(quantile(q, histogram, where=where), f"p{q * 100:g}") for q in (0.5, 0.95, 0.99)]


def overview() -> dict[str, Any]:
    """Is the gateway answering, how fast, for whom, and at what cost."""
    # No 5xx at all is 0%, not "no data".
    errors = f"({rate(REQUESTS, where=SERVER_ERROR)} or vector(0)) / {rate(REQUESTS)}"
    now = [
        single("Requests per second", "Every route, every status.", "reqps", Query(rate(REQUESTS))),
        single("Server errors", "Answers with a 5xx status.", "percentunit", Query(errors)),
        single("p95 latency", "Arrival to last byte.", "ms", Query(quantile(0.95, LATENCY))),
        single("Spend", "At list prices, over the range.", "currencyUSD", Query(increase(COST)),
               instant=True),
    ]  # fmt: skip
    traffic = [
        graph("Requests by route", "Route templates of the API.", "reqps",
              Query(rate(REQUESTS, ("route",)), "{{route}}")),
        graph("Requests by status", "HTTP status of the answer.", "reqps",
              Query(rate(REQUESTS, ("status",)), "{{status}}"), stacked=True),
        graph("Requests by group", "The caller's access group.", "reqps",
              Query(rate(REQUESTS, ("group",)), "{{group}}")),
        graph("Error ratio", "4xx: refused or malformed requests; 5xx: the gateway or the "
              "upstream failed.", "percentunit",
              Query(share(f"{REQUESTS}{{{CLIENT_ERROR}}}", REQUESTS), "4xx"),
              Query(share(f"{REQUESTS}{{{SERVER_ERROR}}}", REQUESTS), "5xx")),
    ]  # fmt: skip
    latency = [
        graph("Request latency", "Arrival to the last byte.", "ms", *_latencies(LATENCY)),
        graph("Gateway overhead", "The request less the upstream's time.", "ms",
              *_latencies(OVERHEAD)),
        graph("Time to first token", "Streams: arrival to the first chunk with content.", "ms",
              Query(quantile(0.5, TTFT, ("model",)), "{{model}} p50"),
              Query(quantile(0.95, TTFT, ("model",)), "{{model}} p95")),
        graph("Tokens per second", "As the answers' usage counted them.", "short",
              Query(rate(TOKENS, ("direction",)), "{{direction}}")),
    ]  # fmt: skip
    rows = [("Now", now), ("Traffic", traffic), ("Latency", latency)]
    return dashboard("raygate-overview", "raygate: overview", overview.__doc__ or "", rows)


def cost() -> dict[str, Any]:
    """What the traffic cost at list prices, who spent it, and what the cache saved."""
    saved = f"{increase(AVOIDED)} / ({increase(AVOIDED)} + {increase(COST)})"
    totals = [
        single("Spend", "Over the range, at list prices.", "currencyUSD",
               Query(increase(COST)), instant=True),
        single("Avoided by the cache", "What the hits would have cost.", "currencyUSD",
               Query(increase(AVOIDED)), instant=True),
        single("Share saved", "Avoided over avoided plus spent.", "percentunit", Query(saved),
               instant=True),
        single("Tokens", "In and out, over the range.", "short", Query(increase(TOKENS)),
               instant=True),
    ]  # fmt: skip
    spend = [
        graph("Spend per hour by model", "The rate of spend, per model alias.", "currencyUSD",
              Query(rate(COST, ("model",)) + PER_HOUR, "{{model}}"), width=24),
        bars("Spend by group", "Over the range.", "currencyUSD",
             Query(increase(COST, ("group",)), "{{group}}"), width=8),
        bars("Spend by model", "Over the range.", "currencyUSD",
             Query(increase(COST, ("model",)), "{{model}}"), width=8),
        bars("Spend by target", "Over the range, per provider/model.", "currencyUSD",
             Query(increase(COST, ("target",)), "{{target}}"), width=8),
    ]  # fmt: skip
    savings = [
        graph("Avoided per hour by model", "Cache hits, at the original target's prices.",
              "currencyUSD", Query(rate(AVOIDED, ("model",)) + PER_HOUR, "{{model}}")),
        bars("Avoided by group", "Over the range.", "currencyUSD",
             Query(increase(AVOIDED, ("group",)), "{{group}}")),
    ]  # fmt: skip
    tokens = [
        graph("Tokens per second by model", "In (prompt) and out (completion).", "short",
              Query(rate(TOKENS, ("model", "direction")), "{{model}} {{direction}}")),
        bars("Tokens by group", "Over the range.", "short",
             Query(increase(TOKENS, ("group", "direction")), "{{group}} {{direction}}")),
    ]  # fmt: skip
    rows = [("Over the range", totals), ("Spend", spend), ("Savings", savings), ("Tokens", tokens)]
    return dashboard("raygate-cost", "raygate: cost and savings", cost.__doc__ or "", rows)


def cache() -> dict[str, Any]:
    """How often the cache answers, in which phase, and what verification refused."""
    looked_up = f"{CACHE_REQUESTS}{{{LOOKED_UP}}}"
    by_phase = f"{rate(looked_up, ('phase',))} / ignoring(phase) group_left {rate(looked_up)}"
    hits = [
        single("Hit ratio", "Hits over lookups (bypasses left out).", "percentunit",
               Query(share(f"{CACHE_REQUESTS}{{{HITS}}}", looked_up))),
        single("Avoided by the cache", "Over the range.", "currencyUSD",
               Query(increase(AVOIDED)), instant=True),
        graph("Outcomes by phase", "Share of lookups per outcome: exact, normalized, "
              "semantic hits and misses.", "percentunit", Query(by_phase, "{{phase}}"),
              stacked=True),
        graph("Outcomes by model", "Every request the cache applies to, bypasses included.",
              "reqps", Query(rate(CACHE_REQUESTS, ("model", "phase")), "{{model}} {{phase}}"),
              width=24),
    ]  # fmt: skip
    replicas = [
        graph("Lookups by phase", "As the cache replicas counted them.", "ops",
              Query(rate(LOOKUPS, ("phase",)), "{{phase}}")),
        graph("Refused by verification", "Semantic candidates above the threshold that "
              "verification refused (numbers, negation, roles differed).", "ops",
              Query(rate(REJECTED), "refused")),
        graph("Explorations", "Candidates answered fresh to learn the threshold from.", "ops",
              Query(rate(EXPLORATIONS, ("kind",)), "{{kind}}"),
              Query(rate(OBSERVATIONS, ("kind", "outcome")), "{{kind}} {{outcome}}")),
        graph("Cache replica latency", "Ray Serve's processing time of the Cache "
              "deployment's calls.", "ms",
              *_latencies(PROCESSING_MS, 'deployment="Cache"')),
    ]  # fmt: skip
    rows = [("Hits", hits), ("Cache replicas", replicas)]
    return dashboard("raygate-cache", "raygate: cache", cache.__doc__ or "", rows)


def policy() -> dict[str, Any]:
    """What the policy did to requests, who was refused and why, and the audit writer."""
    decisions = [
        graph("Decisions by rule and action", "Rules that fired.", "ops",
              Query(rate(DECISIONS, ("rule", "action")), "{{rule}} {{action}}"), width=24),
        bars("Blocks by rule", "Over the range.", "short",
             Query(increase(DECISIONS, ("rule",), 'action="block"'), "{{rule}}")),
        bars("Redactions by rule", "Over the range.", "short",
             Query(increase(DECISIONS, ("rule",), 'action="redact"'), "{{rule}}")),
    ]  # fmt: skip
    refusals = [
        graph("Refusals by reason", "Refused before any upstream: rate_limit, budget, "
              "policy, access, auth.", "reqps", Query(rate(REFUSALS, ("reason",)), "{{reason}}")),
        bars("Refusals by group", "Over the range.", "short",
             Query(increase(REFUSALS, ("group", "reason")), "{{group}} {{reason}}")),
        graph("Refused answers by status", "401: no valid credential; 403: not allowed; "
              "429: over a rate limit or budget.", "reqps",
              Query(rate(REQUESTS, ("status",), 'status=~"401|403|429"'), "{{status}}"),
              width=24),
    ]  # fmt: skip
    audit = [
        graph("Audit queue", "Records queued or being committed, per ingress replica.", "short",
              Query(gauge(AUDIT_QUEUE, ("replica",)), "{{replica}}"), width=8),
        graph("Audit write lag", "Record queued to committed.", "ms",
              *_latencies(AUDIT_LAG), width=8),
        graph("Audit batches refused", "By the database; retried until they go in.", "ops",
              Query(rate(AUDIT_FAILURES), "refused"), width=8),
    ]  # fmt: skip
    rows = [("Policy", decisions), ("Refusals", refusals), ("Audit trail", audit)]
    return dashboard("raygate-policy", "raygate: policy and security", policy.__doc__ or "", rows)


def upstreams() -> dict[str, Any]:
    """Which targets fail, which breakers are open, and the health of the deployments."""
    breakers = [
        states("Breaker state", "Per target and router replica's worst: closed, half-open, "
               "open.", Query(gauge(BREAKER_STATE, ("target",), total="max"), "{{target}}"),
               [("closed", "green"), ("half-open", "yellow"), ("open", "red")]),
        bars("Breaker trips by target", "Times a breaker opened, over the range.", "short",
             Query(increase(BREAKER_TRIPS, ("target",)), "{{target}}")),
        graph("Failed attempts by target", "Attempts failed over or answered with an error.",
              "ops", Query(rate(FAILURES, ("target", "status")), "{{target}} {{status}}")),
    ]  # fmt: skip
    answers = [
        graph("Answers by target", "The target that answered each request.", "reqps",
              Query(rate(REQUESTS, ("target",), 'target!="none"'), "{{target}}")),
        graph("Time to first token by target", "Streams, p95.", "ms",
              Query(quantile(0.95, TTFT, ("target",)), "{{target}}")),
    ]  # fmt: skip
    deployments = [
        graph("Healthy replicas", "Per Serve deployment, as the controller counts them.",
              "short", Query(gauge(REPLICAS_HEALTHY, ("deployment",)), "{{deployment}}"),
              width=8),
        graph("Calls in progress", "Per Serve deployment.", "short",
              Query(gauge(PROCESSING_NOW, ("deployment",)), "{{deployment}}"), width=8),
        graph("Processing latency", "p95 per Serve deployment.", "ms",
              Query(quantile(0.95, PROCESSING_MS, ("deployment",)), "{{deployment}}"), width=8),
    ]  # fmt: skip
    rows = [("Breakers", breakers), ("Answers", answers), ("Deployments", deployments)]
    return dashboard("raygate-upstreams", "raygate: upstream health", upstreams.__doc__ or "", rows)


def local_models() -> dict[str, Any]:
    """The models served on the cluster's own replicas: load, replicas and speed."""
    engines = [
        graph("In flight by model", "Requests in the engines, running and queued.", "short",
              Query(gauge(IN_FLIGHT, ("model",)), "{{model}}")),
        graph("In flight by replica", "One engine per replica.", "short",
              Query(gauge(IN_FLIGHT, ("model", "replica")), "{{model}} {{replica}}")),
        graph("Requests per second by model", "Requests the engines took.", "reqps",
              Query(rate(LOCAL_REQUESTS, ("model",)), "{{model}}"), width=24),
    ]  # fmt: skip
    replicas = [
        graph("Healthy replicas", "Per local model deployment.", "short",
              Query(gauge(REPLICAS_HEALTHY, ("deployment",), LOCAL_DEPLOYMENT), "{{deployment}}")),
        graph("Processing latency", "p95 per local model deployment.", "ms",
              Query(quantile(0.95, PROCESSING_MS, ("deployment",), LOCAL_DEPLOYMENT),
                    "{{deployment}}")),
    ]  # fmt: skip
    gateway = [
        graph("Time to first token", "Streams answered by local targets.", "ms",
              Query(quantile(0.5, TTFT, ("target",), LOCAL_TARGET), "{{target}} p50"),
              Query(quantile(0.95, TTFT, ("target",), LOCAL_TARGET), "{{target}} p95")),
        graph("Output tokens per second", "Completion tokens of local targets.", "short",
              Query(rate(TOKENS, ("target",), f'{LOCAL_TARGET},direction="out"'), "{{target}}")),
    ]  # fmt: skip
    rows = [("Engines", engines), ("Replicas", replicas), ("Through the gateway", gateway)]
    title = "raygate: local models"
    return dashboard("raygate-local-models", title, local_models.__doc__ or "", rows)


DASHBOARDS: tuple[Callable[[], dict[str, Any]], ...] = (
    overview,
    cost,
    cache,
    policy,
    upstreams,
    local_models,
)


def build_all() -> list[dict[str, Any]]:
    """Every dashboard's JSON model, in the order above."""
    return [build() for build in DASHBOARDS]


def render(dashboard_json: dict[str, Any]) -> str:
    """The file text of one dashboard: stable key order, so regenerating changes nothing."""
    return json.dumps(dashboard_json, indent=2, sort_keys=True) + "\n"


def write_dashboards(out: Path) -> list[Path]:
    """Write each dashboard to `out/<uid>.json`; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for dashboard_json in build_all():
        path = out / f"{dashboard_json['uid']}.json"
        path.write_text(render(dashboard_json))
        written.append(path)
    return written


_GRAFANA_WINDOWS = ("$__rate_interval", "$__range", "$__interval")
_VARIABLE = re.compile(r"\$(\w+|\{\w+\})")


def panel_queries(
    dashboard_json: dict[str, Any], window: str | None = None
) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel, rows' panels included.

    Given a `window` (`5m`), Grafana's interval variables become it, so that Prometheus can
    run the query as is; a variable left over (one this function does not know) is a
    ValueError rather than a query that fails later for a reason hard to see.
    """
    found = []
    for panel in _panels(dashboard_json["panels"]):
        for target in panel.get("targets", []):
            expr = target["expr"]
            if window is not None:
                for variable in _GRAFANA_WINDOWS:
                    expr = expr.replace(variable, window)
                if leftover := _VARIABLE.search(expr):
                    raise ValueError(f"{panel['title']}: no value for {leftover.group()}")
            found.append((panel["title"], expr))
    return found


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The panels, with those inside collapsed rows, in order."""
    return [p for panel in panels for p in (panel, *_panels(panel.get("panels", [])))]
