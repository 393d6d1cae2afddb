"""`raygate-haproxy` (gateway/haproxy.py): raygate's settings put into the config Ray writes,
and the real HAProxy run on it; tests/integration/test_haproxy.py runs it in front of replicas
that die, tests/cluster in front of the cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ray.serve._private.haproxy_templates import HAPROXY_CONFIG_TEMPLATE

from deployments.local import ray_env
from gateway.haproxy import (
    CLIENT_HEADER,
    REQUEST_TIMEOUT_ENV,
    SECRET_ENV,
    SECRET_HEADER,
    SETTINGS,
    ClientAddress,
    error_page,
    find_binary,
    frontend_rules,
    rewrite_arguments,
    with_settings,
)

WRAPPER = str(Path(sys.executable).with_name("raygate-haproxy"))
CONFIG = """global
    maxconn 64
defaults
    mode http
    timeout connect 5s
    timeout client 5s
    timeout server 5s
frontend http_frontend
    bind 127.0.0.1:18999
    default_backend app
backend app
    server a 127.0.0.1:1
"""


def _section(config: str, name: str) -> list[str]:
    lines = config.splitlines()
    start = lines.index(name) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i][:1].isspace()), len(lines))
    return [line.strip() for line in lines[start:end]]


def test_the_settings_open_the_defaults_section_and_nothing_else_changes() -> None:
    changed = with_settings(CONFIG)
    assert _section(changed, "defaults")[1:] == [*SETTINGS, *_section(CONFIG, "defaults")]
    assert "option http-buffer-request" in SETTINGS
    assert "timeout http-keep-alive 90s" in SETTINGS  # as Serve's own proxy (uvicorn)
    kept = [line for line in changed.splitlines() if line.strip() not in SETTINGS]
    assert [line for line in kept if "raygate-haproxy" not in line] == CONFIG.splitlines()


def test_rays_template_has_the_defaults_section_the_settings_go_into() -> None:
    # Ray's own template (what every node runs): a Ray upgrade that renamed the section
    # would fail here, not by running HAProxy without the settings.
    assert _section(with_settings(HAPROXY_CONFIG_TEMPLATE), "defaults")[1 : 1 + len(SETTINGS)] == [
        *SETTINGS
    ]


def test_a_config_without_defaults_is_refused() -> None:
    with pytest.raises(ValueError, match="defaults"):
        with_settings("global\n    maxconn 1\nfrontend f\n    defaults\n")


def test_only_the_config_file_argument_changes_and_rays_file_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    monkeypatch.delenv(REQUEST_TIMEOUT_ENV, raising=False)
    source = tmp_path / "haproxy.cfg"
    source.write_text(CONFIG)
    argv = ["-db", "-f", str(source), "-sf", "123"]
    rewritten = rewrite_arguments(argv)
    assert rewritten == ["-db", "-f", f"{source}.raygate", "-sf", "123"]
    assert source.read_text() == CONFIG
    added = (
        *SETTINGS,
        "timeout http-request 30s",
        f"errorfile 408 {source}.raygate.408.http",
    )
    assert Path(rewritten[2]).read_text() == with_settings(CONFIG, added)
    assert rewrite_arguments(["-vv"]) == ["-vv"]


def test_a_config_it_cannot_change_runs_as_ray_wrote_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "haproxy.cfg"
    source.write_text("global\n    maxconn 1\n")
    assert rewrite_arguments(["-f", str(source)]) == ["-f", str(source)]
    assert "settings are not applied" in capsys.readouterr().err


def test_haproxy_accepts_the_config_with_the_settings(tmp_path: Path) -> None:
    # Pointed at itself as Ray's binary path, as the manifests set it: it must find the real
    # HAProxy rather than run itself again.
    source = tmp_path / "haproxy.cfg"
    source.write_text(CONFIG)
    checked = subprocess.run(
        [WRAPPER, "-c", "-f", str(source)],
        env={"PATH": "/usr/bin:/bin", "RAY_SERVE_HAPROXY_BINARY_PATH": WRAPPER},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Configuration file is valid" in checked.stdout + checked.stderr
    written = (tmp_path / "haproxy.cfg.raygate").read_text()
    assert "timeout http-request 30s" in written


def test_naming_itself_as_haproxy_is_an_error_not_a_loop(tmp_path: Path) -> None:
    checked = subprocess.run(
        [WRAPPER, "-v"], env={"RAYGATE_HAPROXY_BINARY": WRAPPER},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode != 0
    assert "RAYGATE_HAPROXY_BINARY" in checked.stderr


SECRET = "0123456789abcdef"


def test_with_a_secret_the_front_end_names_the_client_and_proves_it(tmp_path: Path) -> None:
    changed = with_settings(CONFIG, frontend=frontend_rules(SECRET))
    assert _section(changed, "frontend http_frontend")[1:3] == [
        f"http-request set-header {CLIENT_HEADER} %[src]",
        f"http-request set-header {SECRET_HEADER} {SECRET}",
    ]
    # Ray's template has the front end the rules go into.
    rendered = with_settings(HAPROXY_CONFIG_TEMPLATE, frontend=frontend_rules(SECRET))
    assert f"http-request set-header {CLIENT_HEADER} %[src]" in _section(
        rendered, "frontend http_frontend"
    )


def test_the_rewritten_config_holding_the_secret_is_readable_by_its_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    source = tmp_path / "haproxy.cfg"
    source.write_text(CONFIG)
    target = Path(rewrite_arguments(["-f", str(source)])[1])
    assert SECRET in target.read_text()
    assert target.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("secret", ["", "has space", 'quote"d', "hash#", "per%cent"])
def test_a_secret_haproxy_would_misread_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match=SECRET_ENV):
        frontend_rules(secret)


def test_haproxy_accepts_the_config_with_the_client_rules(tmp_path: Path) -> None:
    source = tmp_path / "haproxy.cfg"
    source.write_text(CONFIG)
    checked = subprocess.run(
        [WRAPPER, "-c", "-f", str(source)],
        env={"PATH": "/usr/bin:/bin", "RAY_SERVE_HAPROXY_BINARY_PATH": WRAPPER,
             SECRET_ENV: SECRET},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert SECRET in (tmp_path / "haproxy.cfg.raygate").read_text()


def test_the_client_address_is_taken_from_the_proxy_only_with_its_secret() -> None:
    address = ClientAddress(SECRET)
    proven = {SECRET_HEADER: SECRET, CLIENT_HEADER: "10.1.2.3"}
    assert address("127.0.0.1", proven) == "10.1.2.3"
    assert address("127.0.0.1", {**proven, CLIENT_HEADER: " ::1 "}) == "::1"
    # A caller that reaches the replica directly cannot name its address.
    assert address("10.9.9.9", {CLIENT_HEADER: "10.1.2.3"}) == "10.9.9.9"
    assert address("10.9.9.9", {**proven, SECRET_HEADER: SECRET + "x"}) == "10.9.9.9"
    # What is not an address is not taken.
    assert address("127.0.0.1", {**proven, CLIENT_HEADER: "10.1.2.3, 10.0.0.1"}) == "127.0.0.1"
    # Without a configured secret nothing is read from the headers.
    assert ClientAddress(None)("127.0.0.1", proven) == "127.0.0.1"
    assert ClientAddress("")("127.0.0.1", proven) == "127.0.0.1"


def test_raygate_up_runs_haproxy_with_a_proxy_secret_kept_in_its_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_HAPROXY_BINARY_PATH", SECRET_ENV):
        monkeypatch.delenv(name, raising=False)
    env = ray_env(tmp_path)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_HAPROXY_BINARY_PATH"] == WRAPPER
    assert env["RAY_SERVE_HAPROXY_RETRY_ON"] == "conn-failure empty-response"
    secret = env[SECRET_ENV]
    assert len(secret) == 64 and frontend_rules(secret)
    assert (tmp_path / "proxy_secret").stat().st_mode & 0o077 == 0
    assert ray_env(tmp_path)[SECRET_ENV] == secret  # kept across restarts
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "0")  # an operator's own choice wins
    assert ray_env(tmp_path)["RAY_SERVE_ENABLE_HA_PROXY"] == "0"


def test_the_password_less_stats_page_listens_on_loopback_only() -> None:
    config = CONFIG + "listen stats\n  bind *:8404\n  stats enable\n"
    assert _section(with_settings(config), "listen stats") == [
        "bind 127.0.0.1:8404",
        "stats enable",
    ]
    # Ray's template binds it on every interface; the front end keeps its own address.
    rendered = with_settings(HAPROXY_CONFIG_TEMPLATE)
    assert _section(rendered, "listen stats")[0] == "bind 127.0.0.1:{{ config.stats_port }}"
    assert _section(rendered, "frontend prometheus")[0] == "bind :{{ config.metrics_port }}"


@pytest.mark.parametrize("value", ["0", "-1", "30s", "soon"])
def test_a_request_timeout_haproxy_would_misread_stops_it(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REQUEST_TIMEOUT_ENV, value)
    with pytest.raises(ValueError, match=REQUEST_TIMEOUT_ENV):
        rewrite_arguments(["-f", str(tmp_path / "haproxy.cfg")])


def test_the_admin_stats_socket_is_its_owners_only() -> None:
    socket = "stats socket /tmp/x.sock mode 666 level admin expose-fd listeners"
    config = CONFIG.replace("global\n", f"global\n    {socket}\n")
    assert _section(with_settings(config), "global")[0] == (
        "stats socket /tmp/x.sock mode 600 level admin expose-fd listeners"
    )
    rendered = with_settings(HAPROXY_CONFIG_TEMPLATE)
    assert "stats socket {{ config.socket_path }} mode 600 level admin" in rendered


def test_haproxys_408_for_a_body_that_never_came_is_in_openais_shape() -> None:
    head, _, body = error_page(7).partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 408 ")
    assert f"content-length: {len(body)}" in head.splitlines()
    error = json.loads(body)["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_timeout")
    assert "7 seconds" in error["message"]


def test_the_binary_found_is_the_real_haproxy_and_the_environment_is_left_as_it_was(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RAYGATE_HAPROXY_BINARY", raising=False)
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", WRAPPER)  # as Ray's processes have it
    found = find_binary()
    assert found is not None and Path(found).resolve() != Path(WRAPPER).resolve()
    shown = subprocess.run([found, "-v"], capture_output=True, text=True, timeout=60)
    assert "HAProxy" in shown.stdout
    assert os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"] == WRAPPER


def test_without_an_haproxy_binary_raygate_up_keeps_serves_own_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_HAPROXY_BINARY_PATH", SECRET_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAYGATE_HAPROXY_BINARY", str(tmp_path / "no-such-haproxy"))
    assert find_binary() is None
    env = ray_env(tmp_path)
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in env and SECRET_ENV not in env
    checked = subprocess.run([WRAPPER, "-v"], capture_output=True, text=True, timeout=60)
    assert checked.returncode != 0 and "no HAProxy binary found" in checked.stderr
