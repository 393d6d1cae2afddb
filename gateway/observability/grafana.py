"""Dashboards into a running Grafana, through its HTTP API (`/api/folders`,
`/api/dashboards/db`), with httpx: grafana-client would pull in urllib3-future, which
replaces urllib3 in site-packages and breaks requests (botocore, google-auth).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import httpx


class GrafanaError(Exception):
    """Grafana refused a call, or could not be reached; the message says which and why."""


class Grafana:
    """A Grafana at `url`, as a service account (`token`) or with credentials in the URL."""

    def __init__(
        self, url: str, token: str | None = None, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=url.rstrip("/") + "/api", headers=headers, timeout=30, transport=transport
        )

    def __enter__(self) -> Grafana:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def folder(self, title: str) -> str:
        """The uid of the folder called `title`, made (its uid from the title) if missing."""
        for folder in self._call("GET", "/folders", params={"limit": 1000}):
            if folder["title"] == title:
                return str(folder["uid"])
        uid = re.sub(r"[^a-z0-9-]+", "-", title.lower()).strip("-")[:40] or None
        return str(self._call("POST", "/folders", json={"title": title, "uid": uid})["uid"])

    def save(self, dashboards: Sequence[dict[str, Any]], folder_uid: str) -> list[str]:
        """Create or replace each dashboard (by uid) in the folder; their URLs in Grafana."""
        urls = []
        for dashboard in dashboards:
            body = {"dashboard": dashboard, "folderUid": folder_uid, "overwrite": True}
            urls.append(str(self._call("POST", "/dashboards/db", json=body).get("url", "")))
        return urls

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise GrafanaError(f"{method} {self._http.base_url}{path}: {exc}") from exc
        if response.is_error:
            raise GrafanaError(f"{method} {path}: {response.status_code} {_message(response)}")
        return response.json()


def _message(response: httpx.Response) -> str:
    """Grafana's own explanation (`{"message": ...}`), else the body as it came."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    return str(body["message"]) if isinstance(body, dict) and "message" in body else response.text
