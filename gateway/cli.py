"""The `raygate` command: up, down, simulate, check-config, deploy, keys, audit, cache,
providers, dashboards.

Ray is imported only by the commands that need it, so `raygate simulate` and
`raygate check-config` start fast.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import threading
from importlib import resources
from pathlib import Path

from gateway.audit.cli import add_audit_commands
from gateway.cache.cli import add_cache_commands
from gateway.caveats import caveats
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.deploy import add_deploy_command
from gateway.identity.cli import add_key_commands
from gateway.identity.startup import check_safe_to_start
from gateway.observability.cli import add_dashboard_commands
from gateway.providers.cli import add_provider_commands


def default_config_path() -> Path:
    """`RAYGATE_CONFIG`, else the packaged embedded default."""
    env = os.environ.get("RAYGATE_CONFIG")
    if env:
        return Path(env)
    return Path(str(resources.files("gateway").joinpath("defaults/embedded.yaml")))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `raygate` console script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:
        from gateway.simulator import main as simulate

        return simulate(argv[1:])
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as exc:
        print(f"raygate: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raygate", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start the gateway on this machine")
    up.add_argument("--config", type=Path, default=None, help="YAML config (RAYGATE_CONFIG)")
    up.add_argument("--detach", action="store_true", help="return once the gateway is ready")
    up.add_argument("--state-dir", type=Path, default=_state_dir())
    up.add_argument("--ray-port", type=int, default=int(os.environ.get("RAYGATE_RAY_PORT", 6380)))
    up.add_argument(
        "--dashboard-port", type=int, default=int(os.environ.get("RAYGATE_DASHBOARD_PORT", 8265))
    )
    up.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("RAYGATE_METRICS_PORT", 9464)),
        help="where Ray's metrics agent serves Prometheus metrics (RAYGATE_METRICS_PORT)",
    )
    up.add_argument("--num-cpus", type=int, default=max(os.cpu_count() or 2, 2))
    up.set_defaults(run=_up)

    down = commands.add_parser("down", help="stop everything `raygate up` started")
    down.add_argument("--state-dir", type=Path, default=_state_dir())
    down.set_defaults(run=_down)

    check = commands.add_parser("check-config", help="validate a config file and summarise it")
    check.add_argument("--config", type=Path, default=None)
    check.set_defaults(run=_check_config)

    commands.add_parser("simulate", help="run the upstream simulator (see `simulate --help`)")
    add_key_commands(commands, lambda args: _load(args.config, secrets_dir=_state_dir()))
    add_audit_commands(commands, lambda args: _load(args.config, secrets_dir=_state_dir()))
    add_cache_commands(commands, lambda args: _load(args.config, secrets_dir=_state_dir()))
    add_provider_commands(commands, lambda args: _load(args.config, secrets_dir=_state_dir()))
    add_dashboard_commands(commands)
    add_deploy_command(commands)
    return parser


def _state_dir() -> Path:
    return Path(os.environ.get("RAYGATE_STATE_DIR", ".raygate"))


def _load(
    path: Path | None, *, secrets_dir: Path | None = None, create: bool = False
) -> GatewayConfig:
    if secrets_dir is not None:
        _local_secret(secrets_dir, "RAYGATE_KEY_SECRET", "key_secret", "", create=create)
        _local_secret(secrets_dir, "RAYGATE_AUDIT_KEY", "audit_key", "local:", create=create)
    return load_config(path or default_config_path())


def _local_secret(state_dir: Path, variable: str, name: str, prefix: str, *, create: bool) -> None:
    """On one machine, `variable` (RAYGATE_KEY_SECRET, RAYGATE_AUDIT_KEY) defaults to a random
    secret kept in the state dir (mode 0600), so issued keys and the audit chain's key survive
    restarts without anyone having to invent one. A config that does not name the variable
    ignores it.

    Only `raygate up` (`create`) makes one. The admin commands use the one it made, never a
    new one: run against a cluster's config from a machine without the cluster's secrets, a
    fresh local secret would issue keys the cluster cannot check and sign audit records its
    chain does not verify, silently. Without either, the config's own default applies (empty
    for both: the command says which setting is missing)."""
    if os.environ.get(variable):
        return
    path = state_dir / name
    if not path.exists():
        if not create:
            return
        state_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(prefix + secrets.token_urlsafe(32))
    os.environ[variable] = path.read_text().strip()


def _up(args: argparse.Namespace) -> int:
    from deployments.local import LaunchError, down, up

    config = _load(args.config, secrets_dir=args.state_dir, create=True)
    check_safe_to_start(config)  # before anything starts: ConfigError, exit status 2
    try:
        state = up(
            config,
            state_dir=args.state_dir,
            ray_port=args.ray_port,
            dashboard_port=args.dashboard_port,
            metrics_port=args.metrics_port,
            num_cpus=args.num_cpus,
        )
    except LaunchError as exc:
        print(f"raygate: {exc}", file=sys.stderr)
        return 1
    _print_welcome(config, state.base_url)
    if args.detach:
        return 0
    print("Press Ctrl-C (or run `raygate down`) to stop.")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    # Ends on a signal, or once `raygate down` (another terminal) has removed the state file.
    state_file = args.state_dir / "state.json"
    while not stop.wait(timeout=1.0) and state_file.exists():
        pass
    if state_file.exists():
        down(args.state_dir)
    return 0


def _down(args: argparse.Namespace) -> int:
    from deployments.local import down

    down(args.state_dir)
    return 0


def _check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)
    check_safe_to_start(config)
    for name, provider in config.providers.items():
        reason = provider.disabled_reason()
        print(f"provider {name}: {'enabled' if reason is None else f'disabled ({reason})'}")
    models = config.enabled_models()
    for alias, entry in models.items():
        print(f"model {alias}: {', '.join(t.label for t in entry.targets)}")
    for caveat in caveats(config):
        print(f"warning: {caveat}")
    if not models:
        # A gateway that would answer every request with "model not found".
        raise ConfigError(
            "no model can be answered: no model alias has a target on a switched-on provider "
            "and there is no local model; set a provider's key (and URL, where it needs one) "
            "in the environment, e.g. OPENAI_API_KEY (a key set at run time with `raygate "
            "providers set-key` is not seen by this check)"
        )
    return 0


def _print_welcome(config: GatewayConfig, base_url: str) -> None:
    print(f"\nraygate is up: {base_url}/v1")
    if config.auth.dev_key:
        print(f"  API key (local developer): {config.auth.dev_key}")
    print(f"  models: {', '.join(config.enabled_models())}")
    print(f"  try: curl {base_url}/v1/models -H 'Authorization: Bearer <key>'")
    disabled = [n for n, p in config.providers.items() if p.disabled_reason()]
    if disabled:
        print(f"  providers off until their keys are set: {', '.join(disabled)}")
    for caveat in caveats(config):
        print(f"  warning: {caveat}")


if __name__ == "__main__":
    sys.exit(main())
