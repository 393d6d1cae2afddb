"""A stand-in for Grafana's HTTP API on a loopback port: the endpoints that pushing dashboards
uses, with Grafana's answers and status codes, keeping what it was sent.

    with FakeGrafana(token="glsa_test") as grafana:  # or login=("admin", "secret")
        main(["dashboards", "push", "--url", grafana.url, "--token", "glsa_test"])
        assert grafana.dashboards["raygate-overview"]["overwrite"] is True

It serves GET and POST /api/folders and POST /api/dashboards/db as Grafana 11 does: 401
without the credential, 409 for a folder that exists, 412 for a dashboard that exists unless
`overwrite`, 400 for an unknown folder uid. No Grafana server can run here; the dashboards'
JSON itself is checked by the tests that build it.
"""

from __future__ import annotations

import base64
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

Answer = tuple[int, Any]


class FakeGrafana:
    """Grafana's folder and dashboard API in memory, served from a daemon thread.

    `folders` maps uid to title; `dashboards` maps a dashboard's uid to the whole body it was
    last saved with (`dashboard`, `folderUid`, `overwrite`); `calls` lists (method, path) in
    arrival order.
    """

    def __init__(
        self,
        token: str | None = None,
        *,
        login: tuple[str, str] | None = None,
        folders: dict[str, str] | None = None,
    ) -> None:
        self.token = token
        self.login = login
        self.folders: dict[str, str] = dict(folders or {})
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-grafana",
            daemon=True,
        )

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:40123` (the API is under /api)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeGrafana:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)
        self._server.server_close()

    def answer(self, method: str, path: str, authorization: str, body: Any) -> Answer:
        """Grafana's status and JSON answer to one request."""
        with self._lock:
            self.calls.append((method, path))
            if not self._signed_in(authorization):
                return HTTPStatus.UNAUTHORIZED, {"message": "Invalid API key"}
            if (method, path) == ("GET", "/api/folders"):
                return HTTPStatus.OK, [
                    {"id": n, "uid": uid, "title": title}
                    for n, (uid, title) in enumerate(self.folders.items(), 1)
                ]
            if (method, path) == ("POST", "/api/folders"):
                return self._create_folder(body)
            if (method, path) == ("POST", "/api/dashboards/db"):
                return self._save_dashboard(body)
            return HTTPStatus.NOT_FOUND, {"message": "Not found"}

    def _signed_in(self, authorization: str) -> bool:
        """A service account's token or a user's password (HTTP basic), whichever is set;
        anyone when neither is."""
        accepted = set()
        if self.token is not None:
            accepted.add(f"Bearer {self.token}")
        if self.login is not None:
            accepted.add("Basic " + base64.b64encode(":".join(self.login).encode()).decode())
        return not accepted or authorization in accepted

    def _create_folder(self, body: dict[str, Any]) -> Answer:
        title, uid = body["title"], body.get("uid") or f"f{len(self.folders) + 1}"
        if uid in self.folders or title in self.folders.values():
            return HTTPStatus.CONFLICT, {"message": "a folder with the same name already exists"}
        self.folders[uid] = title
        return HTTPStatus.OK, {"id": len(self.folders), "uid": uid, "title": title}

    def _save_dashboard(self, body: dict[str, Any]) -> Answer:
        uid = body["dashboard"]["uid"]
        if body.get("folderUid") not in self.folders:
            return HTTPStatus.BAD_REQUEST, {"message": "folder not found"}
        if uid in self.dashboards and not body.get("overwrite"):
            return HTTPStatus.PRECONDITION_FAILED, {
                "message": "A dashboard with the same uid already exists",
                "status": "name-exists",
            }
        version = self.dashboards.get(uid, {}).get("version", 0) + 1
        self.dashboards[uid] = {**body, "version": version}
        return HTTPStatus.OK, {
            "uid": uid,
            "status": "success",
            "url": f"/d/{uid}",
            "version": version,
        }


def _handler_for(grafana: FakeGrafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._reply()

        def do_POST(self) -> None:
            self._reply()

        def _reply(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            path = self.path.split("?", 1)[0]
            auth = self.headers.get("authorization", "")
            status, payload = grafana.answer(self.command, path, auth, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test reads `calls`; nothing for stderr

    return Handler
