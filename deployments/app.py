"""`build_app`: the Serve DAG, composed from the config. It reads like the architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from ray.serve import Application, Deployment

from deployments.cache import CacheDeployment
from deployments.ingress import Ingress
from deployments.router import RouterDeployment
from gateway.config import GatewayConfig, load_config, parse_config
from gateway.deploy import find_config
from gateway.identity.startup import check_safe_to_start
from local_models.deployment import local_model_app


def build_app(args: dict[str, Any]) -> Application:
    """The gateway app for `serve run` / `serve deploy`.

    `args["config_text"]` is the config's YAML itself (what `raygate deploy` puts there, so
    that a changed config is a changed Serve config); else `args["config"]` is a
    GatewayConfig or a YAML path, a relative path looked up in the working directory, then
    in the raygate source tree (the image's /app on KubeRay).
    """
    if "config_text" in args:
        config = parse_config(args["config_text"], source=args.get("config_name", "config_text"))
    else:
        config = args["config"]
    if not isinstance(config, GatewayConfig):
        config = load_config(find_config(Path(config)))
    check_safe_to_start(config)  # no default or short keys where others can reach them
    # The decorators turn the classes into Deployments; mypy still sees the plain classes.
    cache = cast(Deployment, CacheDeployment).options(**config.serve.cache.options())
    ingress = cast(Deployment, Ingress).options(**config.serve.ingress.options())
    # Local models: vLLM replicas that the router reaches through one handle each.
    local_models = {name: local_model_app(name, m) for name, m in config.local_models.items()}
    cached = cache.bind(config) if config.cache.in_use() else None
    if config.serve.colocate_router:  # each ingress replica routes in process
        return ingress.bind(config, None, cached, local_models)
    router = cast(Deployment, RouterDeployment).options(**config.serve.router.options())
    return ingress.bind(config, router.bind(config, local_models), cached)
