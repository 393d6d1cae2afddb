"""The request path's metrics: one observation per request, from its exchange, when its
response (or its stream) ends. The catalogue and where the series go: `gateway.observability`.

Labels are bounded by the config: a model or target the config does not name (a caller can
send any string as `model`), a group that is not an access group, and a path no route matched
are all `other`. A request the cache answered has the target `cache`.
"""

from __future__ import annotations

from gateway.api.exchange import Exchange
from gateway.config import GatewayConfig
from gateway.observability.metrics import MetricFactory, instruments

OTHER = "other"
NONE = "none"  # no value: no upstream answered, no caller was identified
CACHE = "cache"  # the target of a request the cache answered

# Refusals before any upstream, by error code: why the gateway said no.
_REFUSALS = {
    "rate_limit_exceeded": "rate_limit",
    "insufficient_quota": "budget",
    "policy_violation": "policy",
    "content_filter": "policy",
    "model_not_allowed": "access",
    "model_not_permitted": "access",
    "permission_denied": "access",
}


class RequestMetrics:
    """Records each finished request into the catalogue's ingress metrics."""

    def __init__(self, config: GatewayConfig, factory: MetricFactory) -> None:
        # Every configured alias, those on providers without a key yet included: a key set at
        # run time (`raygate providers set-key`) switches them on without a restart.
        models = {**config.enabled_models(), **config.models}
        self._models = frozenset(models)
        self._targets = frozenset(
            f"{t.provider}/{t.model}" for alias in models.values() for t in alias.targets
        )
        self._groups = frozenset(config.access.groups)
        self._m = instruments(
            factory,
            [
                "raygate_requests",
                "raygate_request_latency_ms",
                "raygate_overhead_ms",
                "raygate_ttft_ms",
                "raygate_tokens",
                "raygate_cost_usd",
                "raygate_cost_avoided_usd",
                "raygate_cache_requests",
                "raygate_policy_decisions",
                "raygate_refusals",
                "raygate_upstream_failures",
            ],
        )

    def record(self, exchange: Exchange, latency_ms: float) -> None:
        """One request, `latency_ms` from its arrival to its last byte."""
        m = self._m
        route = exchange.template or OTHER
        model = self._model(exchange.model)
        target = self._answered_by(exchange)
        group = self._group(exchange)
        status = str(exchange.status or 0)
        m["raygate_requests"].inc(
            tags={"route": route, "model": model, "target": target, "status": status,
                  "group": group}
        )  # fmt: skip
        m["raygate_request_latency_ms"].observe(latency_ms, tags={"route": route, "model": model})
        m["raygate_overhead_ms"].observe(exchange.overhead_ms(), tags={"route": route})
        if exchange.first_chunk_ms is not None:
            m["raygate_ttft_ms"].observe(
                exchange.first_chunk_ms, tags={"model": model, "target": target}
            )
        for direction, tokens in (("in", exchange.tokens_in), ("out", exchange.tokens_out)):
            if tokens and target not in (NONE, CACHE):  # only what an upstream processed
                m["raygate_tokens"].inc(
                    tokens,
                    tags={"model": model, "target": target, "group": group,
                          "direction": direction},
                )  # fmt: skip
        if exchange.cost_usd:
            m["raygate_cost_usd"].inc(
                exchange.cost_usd, tags={"model": model, "target": target, "group": group}
            )
        if exchange.cost_avoided_usd:
            m["raygate_cost_avoided_usd"].inc(
                exchange.cost_avoided_usd, tags={"model": model, "group": group}
            )
        if exchange.cache_phase is not None:
            m["raygate_cache_requests"].inc(tags={"model": model, "phase": exchange.cache_phase})
        for decision in exchange.decisions:
            m["raygate_policy_decisions"].inc(
                tags={"rule": decision.rule, "action": decision.action}
            )
        reason = self._refusal(exchange)
        if reason is not None:
            m["raygate_refusals"].inc(tags={"reason": reason, "group": group})
        for attempt in self._failed_attempts(exchange):
            label, _, outcome = attempt.rpartition(":")
            m["raygate_upstream_failures"].inc(
                tags={"target": self._target(label), "status": outcome or OTHER}
            )

    def _answered_by(self, exchange: Exchange) -> str:
        if exchange.answered_from_cache:
            return CACHE
        return self._target(exchange.route.target) if exchange.route is not None else NONE

    def _model(self, model: str | None) -> str:
        if model is None:
            return NONE
        return model if model in self._models else OTHER

    def _target(self, target: str) -> str:
        return target if target in self._targets else OTHER

    def _group(self, exchange: Exchange) -> str:
        if exchange.grant is None:
            return NONE
        if not exchange.grant.groups:
            return "default"
        group = exchange.grant.groups[0]
        return group if group in self._groups else OTHER

    def _refusal(self, exchange: Exchange) -> str | None:
        if exchange.route is not None or exchange.status is None or exchange.status < 400:
            return None
        if exchange.status == 401:
            return "auth"
        return _REFUSALS.get(exchange.error_code or "")

    @staticmethod
    def _failed_attempts(exchange: Exchange) -> list[str]:
        if exchange.route is not None:
            return exchange.route.failed
        if exchange.tried and exchange.tried.startswith("tried="):
            return exchange.tried.removeprefix("tried=").split(",")
        return []
