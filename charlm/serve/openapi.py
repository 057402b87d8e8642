"""The OpenAPI 3.1 description of the server (`GET /v1/openapi.json`), made from the endpoint table:
each endpoint's request body is a JSON Schema built from its `Field`s, with the server's limits."""

from __future__ import annotations

from charlm.serve.endpoints import ENDPOINTS, whom
from charlm.serve.limits import Limits
from charlm.serve.schema import Field
from charlm.version import __version__

_TYPES = {"string": {"type": "string"}, "integer": {"type": "integer"}, "number": {"type": "number"},
          "boolean": {"type": "boolean"}, "strings": {"type": "array", "items": {"type": "string"}}}
_ERROR = {"description": "the request is refused", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}


def field_schema(f: Field, limits: Limits) -> dict:
    """The JSON Schema of one field's value."""
    if f.kind == "texts":
        item = {"type": "string"}
        if f.token_lists:
            item = {"anyOf": [item, {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}]}
        s = {"type": "array", "items": item, "minItems": 1}
    else:
        s = dict(_TYPES[f.kind])
    bound = getattr(limits, f.limit) if f.limit else None
    if s["type"] == "array":
        if bound is not None:
            s["maxItems"] = bound
    else:
        if f.minimum is not None:
            s["minimum"] = f.minimum
        caps = [c for c in (f.maximum, bound) if c is not None]
        if caps:
            s["maximum"] = min(caps)
    if f.choices:
        s["enum"] = list(f.choices)
    if f.nullable:
        s = {"anyOf": [s, {"type": "null"}]}
    s["description"] = f.help
    if not f.required:
        s["default"] = f.default
    return s


def openapi(limits: Limits) -> dict:
    paths = {}
    for e in ENDPOINTS.values():
        body = {"type": "object", "additionalProperties": False,
                "properties": {f.name: field_schema(f, limits) for f in e.fields},
                "required": [f.name for f in e.fields if f.required]}
        paths[f"/v1/{{model}}/{e.name}"] = {"post": {
            "summary": e.summary,
            "description": "Served by " + whom(e) + ".",
            "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"},
                            "description": "a model's name (GET /v1/models)"}],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": body, "example": e.example}}},
            "responses": {"200": {"description": "the records of the command's --json output",
                                  "content": {"application/json": {"schema": {"type": "object"}}}},
                          **{str(s): _ERROR for s in (400, 401, 404, 408, 413, 415)}},
        }}
    paths["/v1/models"] = {"get": {"summary": "The loaded models: name, task, endpoints, `charlm info --json`.",
                                   "responses": {"200": {"description": "{\"models\": [...]}"}}}}
    paths["/healthz"] = {"get": {"summary": "The server is up.", "responses": {"200": {"description": "ok"}}}}
    return {"openapi": "3.1.0", "info": {"title": "charlm serve", "version": __version__},
            "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"}}},
            "paths": paths}
