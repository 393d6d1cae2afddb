"""`raygate-haproxy` (gateway/haproxy.py): raygate's settings put into the config Ray writes,
and the real HAProxy run on it; tests/integration/test_haproxy.py runs it in front of replicas
that die, tests/cluster in front of the cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ray.serve._private.haproxy_templates import HAPROXY_CONFIG_TEMPLATE

from gateway.haproxy import SETTINGS, rewrite_arguments, with_settings

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
    kept = [line for line in changed.splitlines() if not line.strip().startswith(("#", "option"))]
    assert kept == CONFIG.splitlines()


def test_rays_template_has_the_defaults_section_the_settings_go_into() -> None:
    # Ray's own template (what every node runs): a Ray upgrade that renamed the section
    # would fail here, not by running HAProxy without the settings.
    assert _section(with_settings(HAPROXY_CONFIG_TEMPLATE), "defaults")[1 : 1 + len(SETTINGS)] == [
        *SETTINGS
    ]


def test_a_config_without_defaults_is_refused() -> None:
    with pytest.raises(ValueError, match="defaults"):
        with_settings("global\n    maxconn 1\nfrontend f\n    defaults\n")


def test_only_the_config_file_argument_changes_and_rays_file_is_kept(tmp_path: Path) -> None:
    source = tmp_path / "haproxy.cfg"
    source.write_text(CONFIG)
    argv = ["-db", "-f", str(source), "-sf", "123"]
    rewritten = rewrite_arguments(argv)
    assert rewritten == ["-db", "-f", f"{source}.raygate", "-sf", "123"]
    assert source.read_text() == CONFIG
    assert Path(rewritten[2]).read_text() == with_settings(CONFIG)
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
    assert (tmp_path / "haproxy.cfg.raygate").read_text() == with_settings(CONFIG)


def test_naming_itself_as_haproxy_is_an_error_not_a_loop(tmp_path: Path) -> None:
    checked = subprocess.run(
        [WRAPPER, "-v"], env={"RAYGATE_HAPROXY_BINARY": WRAPPER},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode != 0
    assert "RAYGATE_HAPROXY_BINARY" in checked.stderr
