"""`raygate deploy`: a changed raygate config onto a running Ray cluster.

`serve deploy cluster/serve-config.yaml` hands the app the *path* of its raygate config, and
Serve rebuilds an application only when its Serve config changes: an edited raygate.yaml
under an unchanged serve-config.yaml deploys nothing (Serve prints success all the same).
`raygate deploy` puts the config's text into the application's arguments (`config_text`), so
every change to it is a change Serve sees and rolls out replica by replica. The text holds
`${ENV}` references, not secrets: they resolve on the cluster, from the nodes' environment,
when the app is built, as before.

    raygate deploy --address http://HEAD:8265                 # cluster/serve-config.yaml
    raygate deploy --render > serve-config.rendered.yaml      # for a RayService's serveConfigV2
    raygate deploy --address ... --restart                    # rebuild though nothing changed

`--restart` adds a fresh token to the arguments: what a change in a file the config only names
(a topics file) needs, as Serve cannot see into it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from gateway.config import ConfigError, parse_config, required_env

APP_IMPORT_PATH = "deployments.app:build_app"
_SOURCE_ROOT = Path(__file__).resolve().parents[1]


def add_deploy_command(commands: Any) -> None:
    deploy = commands.add_parser(
        "deploy", help="serve deploy the Serve config with the raygate config inside it"
    )
    deploy.add_argument(
        "serve_config", nargs="?", type=Path, default=Path("cluster/serve-config.yaml")
    )
    deploy.add_argument(
        "--config", type=Path, default=None, help="the raygate config (default: the app's args)"
    )
    deploy.add_argument(
        "--address",
        default=os.environ.get("RAY_DASHBOARD_ADDRESS", "http://127.0.0.1:8265"),
        help="the Ray dashboard (RAY_DASHBOARD_ADDRESS); Ray's token from RAY_AUTH_TOKEN",
    )
    deploy.add_argument(
        "--render", action="store_true", help="print the Serve config, deploy nothing"
    )
    deploy.add_argument("--restart", action="store_true", help="rebuild even if nothing changed")
    deploy.set_defaults(run=run_deploy)


def run_deploy(args: argparse.Namespace) -> int:
    serve_config = yaml.safe_load(find_config(args.serve_config).read_text())
    rendered = render(serve_config, config=args.config, restart=args.restart)
    text = yaml.dump(rendered, Dumper=_BlockText, sort_keys=False)
    if args.render:
        sys.stdout.write(text)
        return 0
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="raygate-serve-") as out:
        out.write(text)
        out.flush()
        done = subprocess.run(
            [
                str(Path(sys.executable).with_name("serve")),
                "deploy",
                out.name,
                "--address",
                args.address,
            ],
            check=False,
        )
    return done.returncode


def render(
    serve_config: Mapping[str, Any], *, config: Path | None = None, restart: bool = False
) -> dict[str, Any]:
    """`serve_config` with each raygate application's config text in its arguments."""
    rendered = dict(serve_config)
    apps = []
    for app in serve_config.get("applications", []):
        app = dict(app)
        if app.get("import_path") == APP_IMPORT_PATH:
            args = dict(app.get("args") or {})
            named = args.pop("config", None)
            path = find_config(Path(config or named or "cluster/raygate.yaml"))
            text = path.read_text()
            check(text, source=str(path))
            args.update(config_text=text, config_name=path.name)
            if restart:
                args["restart"] = secrets.token_hex(8)
            app["args"] = args
        apps.append(app)
    rendered["applications"] = apps
    return rendered


def check(text: str, *, source: str) -> None:
    """Raise ConfigError unless `text` is a valid config, whatever the cluster's environment
    will hold: a required `${VAR}` unset here is given a stand-in (the cluster sets it), an
    optional `${VAR:-default}` its default."""
    stand_ins = {name: "stand-in-for-the-clusters-value" for name in required_env(text)}
    parse_config(text, source=source, env={**stand_ins, **os.environ})


class _BlockText(yaml.SafeDumper):
    """Multi-line strings as `|` blocks: the config text stays readable in the Serve config."""


def _block(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockText.add_representer(str, _block)


def find_config(path: Path) -> Path:
    """A config file: absolute, or relative to the working directory, then to the raygate
    source tree (the image's /app on KubeRay)."""
    if path.is_absolute() or path.exists():
        return path
    if (_SOURCE_ROOT / path).exists():
        return _SOURCE_ROOT / path
    raise ConfigError(f"{path}: no such file")
