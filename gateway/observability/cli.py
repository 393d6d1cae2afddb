"""`raygate dashboards ...`: the Grafana dashboards, as files or straight into a Grafana.

    raygate dashboards write [--out DIR]
    raygate dashboards push --url URL [--token TOKEN] [--folder NAME]

`write` puts one JSON file per dashboard in DIR (default `cluster/grafana/dashboards`, the
folder Grafana's file provisioning reads, see `cluster/grafana/README.md`). `push` sends them
through Grafana's HTTP API into a folder (made if missing), overwriting earlier versions by
uid; the token is a service account's, taken from GRAFANA_TOKEN unless given (a flag stays in
the shell's history). Credentials in the URL (`http://admin:admin@host:3000`) work too.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path("cluster/grafana/dashboards")
DEFAULT_FOLDER = "raygate"


def add_dashboard_commands(commands: Any) -> None:
    """Add `dashboards` and its subcommands to the `raygate` parser."""
    dashboards = commands.add_parser("dashboards", help="Grafana dashboards: write or push")
    sub = dashboards.add_subparsers(required=True, metavar="ACTION")

    write = sub.add_parser("write", help="write each dashboard as a JSON file")
    write.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    write.set_defaults(run=_write)

    push = sub.add_parser("push", help="create or update the dashboards in a Grafana")
    push.add_argument("--url", required=True, help="Grafana's base URL, e.g. http://grafana:3000")
    push.add_argument("--token", default=None, help="service account token (GRAFANA_TOKEN)")
    push.add_argument("--folder", default=DEFAULT_FOLDER, help=f"default: {DEFAULT_FOLDER}")
    push.set_defaults(run=_push)


def _write(args: argparse.Namespace) -> int:
    # Imported here, like every command's heavy part: `raygate` itself starts fast.
    from gateway.observability.dashboards import write_dashboards

    for path in write_dashboards(args.out):
        print(path)
    return 0


def _push(args: argparse.Namespace) -> int:
    from gateway.observability.dashboards import build_all
    from gateway.observability.grafana import Grafana, GrafanaError

    token = args.token or os.environ.get("GRAFANA_TOKEN")
    dashboards = build_all()
    try:
        with Grafana(args.url, token) as grafana:
            urls = grafana.save(dashboards, grafana.folder(args.folder))
    except GrafanaError as exc:
        print(f"raygate dashboards push: {exc}", file=sys.stderr)
        return 1
    for dashboard, url in zip(dashboards, urls, strict=True):
        print(f"{dashboard['uid']}: {url}")
    return 0
