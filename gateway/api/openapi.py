"""The gateway's OpenAPI documents: the public routes at `/openapi.json` (and a reader at
`/docs`), the admin routes at `/admin/openapi.json` behind an admin credential.

The routes read their bodies themselves (so that limits and errors are the gateway's own), so
FastAPI cannot see their schemas; each route names its request and answer models here
(`request_body`, `answers`), and the documents carry the wire models' JSON schemas. The error
shape every route answers with is documented as the `default` response, so that a client
generator or an API fuzzer (schemathesis runs over every route in the test suite) knows it.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from gateway.api.admin import AdminGate

_REF = "#/components/schemas/{model}"

# Every model a document names, with the mode its schema is drawn in.
_MODELS: dict[type[BaseModel], Literal["validation", "serialization"]] = {}


class OpenAIErrorDetail(BaseModel):
    """What went wrong, in OpenAI's error shape."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """The body of every error on the OpenAI routes (and the admin routes)."""

    error: OpenAIErrorDetail


class AnthropicErrorDetail(BaseModel):
    type: str
    message: str


class AnthropicError(BaseModel):
    """The body of every error on `/v1/messages`, in Anthropic's shape."""

    type: Literal["error"] = "error"
    error: AnthropicErrorDetail


class Status(BaseModel):
    """`/healthz` and `/readyz`."""

    status: str = Field(description="ok, ready or not ready")
    waiting_for: list[str] | None = Field(None, description="what is not ready yet")


def request_body(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """`openapi_extra` for a route whose JSON body is `model` (may be left out, when not
    `required`)."""
    _MODELS[model] = "validation"
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": _ref(model)}},
        }
    }


def answers(
    model: type[BaseModel] | None,
    *,
    stream: bool = False,
    status: int = 200,
    error: type[BaseModel] = OpenAIError,
) -> dict[int | str, dict[str, Any]]:
    """`responses` for a route answering `model` (JSON; also server-sent events when the
    request may ask for a stream), or an error in `error`'s shape."""
    content: dict[str, Any] = {}
    if model is not None:
        _MODELS[model] = "serialization"
        content["application/json"] = {"schema": _ref(model)}
    else:
        content["application/json"] = {"schema": {"type": "object"}}
    if stream:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    _MODELS[error] = "serialization"
    return {
        status: {"description": "the answer", "content": content},
        "default": {
            "description": "an error (400, 401, 403, 404, 405, 408, 413, 429, 5xx)",
            "content": {"application/json": {"schema": _ref(error)}},
        },
    }


def openapi_routes(app: FastAPI, gate: AdminGate) -> APIRouter:
    """`GET /openapi.json`, `GET /docs` and `GET /admin/openapi.json`."""
    router = APIRouter()
    public: dict[str, Any] = {}
    admin: dict[str, Any] = {}

    @router.get("/openapi.json", include_in_schema=False)
    async def public_document() -> Response:
        if not public:
            public.update(document(app, admin=False))
        return JSONResponse(public)

    @router.get("/admin/openapi.json", include_in_schema=False)
    async def admin_document(request: Request) -> Response:
        await gate(request, "reports.read", action="openapi.read")
        if not admin:
            admin.update(document(app, admin=True))
        return JSONResponse(admin)

    @router.get("/docs", include_in_schema=False)
    async def reader() -> Response:
        return HTMLResponse(_READER)

    return router


def document(app: FastAPI, *, admin: bool) -> dict[str, Any]:
    """The OpenAPI document of the public routes, or of the admin routes, with the schemas of
    every model they name."""
    spec = get_openapi(
        title="raygate admin API" if admin else "raygate",
        version=app.version,
        openapi_version="3.1.0",
        description="A self-hosted AI gateway: OpenAI- and Anthropic-compatible routes.",
        routes=app.routes,
    )
    spec["paths"] = {
        path: operations
        for path, operations in spec["paths"].items()
        if path.startswith("/admin/") == admin
    }
    _, defs = models_json_schema(
        [(model, mode) for model, mode in _MODELS.items()], ref_template=_REF
    )
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {}).update(defs.get("$defs", {}))
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    spec["security"] = [{"bearer": []}]
    return spec


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


# A reader that needs nothing from the network (air-gapped sites): the document, as JSON,
# with its routes listed.
_READER = """<!doctype html>
<html><head><meta charset="utf-8"><title>raygate API</title>
<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}code{background:#eee}
pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head>
<body><h1>raygate API</h1><p>The OpenAPI document is at <a href="/openapi.json">
/openapi.json</a> (admin routes: <code>/admin/openapi.json</code>, with an admin key).</p>
<ul id="routes"></ul><pre id="doc"></pre>
<script>
fetch('/openapi.json').then(r => r.json()).then(doc => {
  const list = document.getElementById('routes');
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const item = document.createElement('li');
      item.textContent = method.toUpperCase() + ' ' + path + ': ' + (op.summary || '');
      list.appendChild(item);
    }
  }
  document.getElementById('doc').textContent = JSON.stringify(doc, null, 2);
});
</script></body></html>
"""
