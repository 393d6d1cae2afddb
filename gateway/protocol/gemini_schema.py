"""JSON Schema (as OpenAI clients write it) onto Gemini's `Schema`, an OpenAPI 3.0 subset.

Used for tool `parameters` and for `response_format` json_schema (`responseSchema`).
What changes, and why:
- `$ref`s into `$defs` / `definitions` are inlined (Gemini has no references); a recursive
  schema is refused with `UnsupportedParameter`.
- `type: [X, "null"]` becomes `type: X, nullable: true`; several non-null types an `anyOf`.
  An `anyOf` member `{"type": "null"}` becomes `nullable: true` likewise.
- `oneOf` becomes `anyOf` (Gemini has no "exactly one"); a one-member `allOf` is inlined and
  a longer one refused.
- `const` becomes a one-value `enum`; an `enum` with non-string values, and a `format` other
  than Gemini's (enum, date-time, int32, int64, float, double), are dropped.
- Every keyword outside Gemini's set is dropped: `additionalProperties`,
  `patternProperties`, `exclusiveMinimum` / `exclusiveMaximum`, `multipleOf`, `uniqueItems`,
  `not`, `if` / `then` / `else`, `examples`, `$schema`, `$id`, `$comment`, `strict`, ....
  These only tighten validation; the shape the model is asked for is unchanged.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import UnsupportedParameter

_KEPT = {
    "type", "format", "title", "description", "nullable", "enum", "items", "minItems",
    "maxItems", "properties", "required", "minProperties", "maxProperties", "minLength",
    "maxLength", "pattern", "minimum", "maximum", "anyOf", "propertyOrdering", "default",
    "example",
}  # fmt: skip
_FORMATS = {"enum", "date-time", "int32", "int64", "float", "double"}
_MAX_DEPTH = 64


def to_gemini_schema(schema: dict[str, Any], *, param: str) -> dict[str, Any]:
    """Gemini's form of a JSON schema (see the module docstring for what changes).

    `param` names the request field in the `UnsupportedParameter` raised for a schema
    Gemini cannot express.
    """
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    return _convert(schema, defs, param, refs=(), depth=0)


def _convert(
    schema: Any, defs: dict[str, Any], param: str, *, refs: tuple[str, ...], depth: int
) -> dict[str, Any]:
    if not isinstance(schema, dict):
        return {}
    if depth > _MAX_DEPTH:
        raise UnsupportedParameter("the JSON schema is nested too deeply for Gemini", param=param)
    if "$ref" in schema:
        ref = str(schema["$ref"])
        name = ref.rsplit("/", 1)[-1]
        if ref in refs:
            raise UnsupportedParameter(
                "recursive JSON schemas cannot be sent to Gemini", param=param
            )
        if name not in defs:
            raise UnsupportedParameter(
                f"the JSON schema's $ref {ref!r} is not in $defs", param=param
            )
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        return _convert({**defs[name], **siblings}, defs, param, refs=(*refs, ref), depth=depth + 1)

    def sub(value: Any) -> dict[str, Any]:
        return _convert(value, defs, param, refs=refs, depth=depth + 1)

    source = dict(schema)
    if "allOf" in source:
        members = source.pop("allOf")
        if not isinstance(members, list) or len(members) != 1:
            raise UnsupportedParameter(
                "Gemini cannot express allOf with several members", param=param
            )
        source = {**members[0], **source}
        return sub(source)
    if "oneOf" in source and "anyOf" not in source:
        source["anyOf"] = source.pop("oneOf")
    if "const" in source and "enum" not in source:
        source["enum"] = [source.pop("const")]

    out: dict[str, Any] = {}
    kind = source.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) < len(kind):
            out["nullable"] = True
        if len(kinds) == 1:
            source["type"] = kinds[0]
        else:
            source.pop("type")
            rest = {k: v for k, v in source.items() if k not in ("anyOf", "nullable")}
            source = {"anyOf": [{**rest, "type": k} for k in kinds]}
    for key, value in source.items():
        if key not in _KEPT:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: sub(prop) for name, prop in value.items()}
        elif key == "items":
            out[key] = sub(value)
        elif key == "anyOf" and isinstance(value, list):
            members = [m for m in value if not (isinstance(m, dict) and m.get("type") == "null")]
            if len(members) < len(value):
                out["nullable"] = True
            if len(members) == 1:
                out.update({k: v for k, v in sub(members[0]).items() if k not in out})
            else:
                out[key] = [sub(m) for m in members]
        elif key == "enum":
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                out[key] = value
        elif key == "format":
            if value in _FORMATS:
                out[key] = value
        else:
            out[key] = value
    return out
