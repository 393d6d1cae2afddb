"""What a valid config does that its operator may not expect: `raygate check-config` and
`raygate up` print these as warnings (the config still loads)."""

from __future__ import annotations

from gateway.config import GatewayConfig


def caveats(config: GatewayConfig) -> list[str]:
    """One sentence per surprise in `config`, empty when there is none."""
    found = []
    serve = config.serve
    if serve.colocate_router and "router" in serve.model_fields_set:
        found.append(
            "serve.router sizes a Router deployment, but the router runs in each ingress "
            "replica (serve.colocate_router: true): size serve.ingress instead, or set "
            "serve.colocate_router: false"
        )
    most = serve.ingress.most_replicas()
    limits = config.rate_limits
    if limits.configured() and limits.store.url is None and most != 1:
        replicas, times = (
            (str(most), f"{most}x") if most is not None else ("several", "several times")
        )
        found.append(
            "rate limits are counted in each ingress replica's own memory (no "
            f"rate_limits.store.url) and serve.ingress may run {replicas} replicas: a caller "
            f"may get {times} each limit; set rate_limits.store.url to a Redis shared by the "
            "replicas"
        )
    return found
