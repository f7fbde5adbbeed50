"""The OpenAPI 3.1 document, generated from the route table and the pydantic body models.

The server registers its routes from the same :class:`Operation` list this module documents,
and the request/response schemas are the models that validate and shape the bodies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from callbackd import __version__
from callbackd.http.schemas import Problem

PROBLEM_JSON = "application/problem+json"
_REF = "#/components/schemas/{model}"
_STATUS_TITLES = {
    200: "OK",
    201: "Created",
    204: "Deleted",
    400: "Malformed request (JSON, header or parameter)",
    401: "Missing or unknown bearer token",
    403: "The token lacks the scope this operation needs",
    404: "No such resource",
    405: "Method not allowed",
    409: "Conflict with the resource's current state",
    413: "Request body larger than the configured limit",
    422: "Valid JSON that breaks the rules (schema, number policy, idempotency)",
    503: "The database is unreachable; retry later",
}


@dataclass(frozen=True)
class Param:
    name: str
    location: str  # path | query | header
    schema: dict[str, Any]
    description: str = ""
    required: bool = False
    explode: bool = False


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: str
    summary: str
    scope: str | None  # None: no token needed
    status: int = 200
    body: type[BaseModel] | None = None
    body_required: bool = True
    response: type[BaseModel] | None = None
    response_type: str = "application/json"
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = field(default=())

    @property
    def operation_id(self) -> str:
        return self.handler


def build_document(operations: Sequence[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for *operations*."""
    inputs = {op.body for op in operations if op.body is not None}
    outputs = {op.response for op in operations if op.response is not None} | {Problem}
    keyed: list[tuple[type[BaseModel], Any]] = [
        *((model, "validation") for model in sorted(inputs, key=lambda m: m.__name__)),
        *((model, "serialization") for model in sorted(outputs, key=lambda m: m.__name__)),
    ]
    refs, defs = models_json_schema(keyed, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "callbackd API",
            "version": __version__,
            "description": "Callback requests, customers, health and metrics of callbackd. "
            "Errors are RFC 9457 problem details (application/problem+json).",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from [[http.tokens]]; scopes read and write.",
                }
            },
        },
    }


def _operation(op: Operation, refs: Mapping[Any, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary}
    if op.scope is not None:
        doc["security"] = [{"bearer": []}]
        doc["description"] = f"Needs a token with the `{op.scope}` scope."
    if op.params:
        doc["parameters"] = [_param(p) for p in op.params]
    if op.body is not None:
        doc["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
        }
    responses: dict[str, Any] = {}
    success: dict[str, Any] = {"description": _STATUS_TITLES.get(op.status, "OK")}
    if op.response is not None:
        success["content"] = {"application/json": {"schema": refs[(op.response, "serialization")]}}
    elif op.status != 204:
        is_json = op.response_type == "application/json"
        schema = {"type": "object"} if is_json else {"type": "string"}
        success["content"] = {op.response_type: {"schema": schema}}
    responses[str(op.status)] = success
    if op.handler == "health":
        # A probe (load balancer, monitoring, curl -f) reads the status code alone.
        responses["503"] = {
            "description": 'Degraded: a component is unhealthy (the same body, status "degraded")',
            "content": success["content"],
        }
    problem = {PROBLEM_JSON: {"schema": refs[(Problem, "serialization")]}}
    codes = {400, 405, *op.errors}
    if op.scope is not None and op.handler != "health":
        codes |= {503}
    if op.scope is not None:
        codes |= {401, 403}
    if op.body is not None:
        codes |= {413, 422}
    if any(p.location in ("path", "query") for p in op.params):
        codes |= {422}
    if any(p.location == "path" for p in op.params):
        codes |= {404}
    for code in sorted(codes):
        responses[str(code)] = {"description": _STATUS_TITLES[code], "content": problem}
    doc["responses"] = responses
    return doc


def _param(param: Param) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": param.name,
        "in": param.location,
        "required": param.required or param.location == "path",
        "schema": param.schema,
    }
    if param.description:
        doc["description"] = param.description
    if param.explode:
        doc["style"] = "form"
        doc["explode"] = True
    return doc
