"""Credentials the gateway refuses to start with (issue #13, finding 7).

The embedded default ships two well-known secrets so that `make run` works at once: the local
developer key (`RAYGATE_DEV_KEY`, default `sk-raygate-dev`) and the admin key
(`RAYGATE_ADMIN_KEY`, default `sk-raygate-admin`). Both are fine on loopback, where only this
machine can reach them, and dangerous anywhere else. So:

- the developer key (any value) only on a loopback address: it belongs to nobody in the
  directory, so on a shared address every request it makes is anonymous;
- the default admin key never beyond loopback;
- an admin key shorter than `MIN_ADMIN_KEY_CHARS` nowhere.

`raygate up`, `raygate check-config` and `build_app` (every `serve run` / `serve deploy`) call
`check_safe_to_start`, which raises `ConfigError` (exit status 2) saying what to change.
"""

from __future__ import annotations

import ipaddress

from gateway.config import AuthConfig, ConfigError, GatewayConfig

DEFAULT_DEV_KEY = "sk-raygate-dev"
DEFAULT_ADMIN_KEY = "sk-raygate-admin"
MIN_ADMIN_KEY_CHARS = 16


def is_loopback(host: str) -> bool:
    """Whether listening on `host` reaches this machine only (a name other than localhost,
    and the wildcard addresses, count as reachable from elsewhere)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def unsafe_settings(auth: AuthConfig, host: str) -> list[str]:
    """What in `auth` must change before the gateway listens on `host`; empty when nothing."""
    problems = []
    if auth.admin_key is not None and len(auth.admin_key) < MIN_ADMIN_KEY_CHARS:
        problems.append(
            f"auth.admin_key is shorter than {MIN_ADMIN_KEY_CHARS} characters: use a long "
            "random one (`raygate keys new-secret`) in RAYGATE_ADMIN_KEY"
        )
    if is_loopback(host):
        return problems
    if auth.dev_key is not None:
        which = "the default developer key" if auth.dev_key == DEFAULT_DEV_KEY else "a dev key"
        problems.append(
            f"auth.dev_key ({which}) is set and the gateway would listen on {host}: the "
            "developer key is for loopback only; set RAYGATE_DEV_KEY= (empty) and issue keys "
            "with `raygate keys issue`, or listen on 127.0.0.1"
        )
    if auth.admin_key == DEFAULT_ADMIN_KEY:
        problems.append(
            f"auth.admin_key is the default {DEFAULT_ADMIN_KEY!r} and the gateway would listen "
            f"on {host}: set RAYGATE_ADMIN_KEY to a long random secret"
        )
    return problems


def check_safe_to_start(config: GatewayConfig, host: str | None = None) -> None:
    """ConfigError naming every problem when the gateway must not start listening on `host`
    (default: `serve.host`) with `config`."""
    problems = unsafe_settings(config.auth, host or config.serve.host)
    if problems:
        raise ConfigError("refusing to start:\n  " + "\n  ".join(problems))
