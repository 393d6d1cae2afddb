"""Helpers shared by the test suites that start real processes."""

from __future__ import annotations

import os
import shutil
import socket

import pytest


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_binary(name: str, *candidates: str) -> str:
    """The path of a system binary a test needs, found on PATH or at one of `candidates`.

    Missing, the test skips with the reason, except under RAYGATE_REQUIRE_SYSTEM_SERVICES=1
    (set by .ci/run, which installs them), where it fails: CI must run every such test.
    """
    found = shutil.which(name) or next((c for c in candidates if os.access(c, os.X_OK)), None)
    if found:
        return found
    reason = f"{name} is not installed (CI installs it from Debian's packages in .ci/run)"
    if os.environ.get("RAYGATE_REQUIRE_SYSTEM_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def optional_binary(name: str, *candidates: str) -> str | None:
    """Like `require_binary`, for a fixture that can run without it: None when missing
    (the tests that need it skip), a failure under RAYGATE_REQUIRE_SYSTEM_SERVICES=1."""
    found = shutil.which(name) or next((c for c in candidates if os.access(c, os.X_OK)), None)
    if found is None and os.environ.get("RAYGATE_REQUIRE_SYSTEM_SERVICES") == "1":
        pytest.fail(f"{name} is not installed (.ci/run installs it from Debian's packages)")
    return found
