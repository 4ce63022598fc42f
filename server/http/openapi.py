"""OpenAPI 3.1 built from the registered endpoints and their pydantic models: one source of truth."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from server.http.problems import Problem
from server.http.routing import Endpoint

_STATUS_TEXT = {400: "Bad request", 401: "Not signed in", 403: "Forbidden", 404: "Not found",
                409: "Conflict", 413: "Too large", 415: "Not JSON", 422: "Invalid fields",
                429: "Too many attempts"}


def build_spec(endpoints: list[Endpoint], *, title: str, version: str, extra_paths: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    models: dict[type[BaseModel], None] = {Problem: None}
    for endpoint in endpoints:
        for model in (endpoint.body, endpoint.response, endpoint.query):
            if model is not None:
                models[model] = None
    keyed: list[tuple[type[BaseModel], JsonSchemaMode]] = [(model, "validation") for model in models]
    keyed += [(model, "serialization") for model in models]
    refs, defs = models_json_schema(keyed, ref_template="#/components/schemas/{model}")
    schemas = defs.get("$defs", {})

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return refs[(model, mode)]  # type: ignore[index]  # pydantic's key type is broader than ours

    paths: dict[str, Any] = dict(extra_paths or {})
    for endpoint in endpoints:
        operation: dict[str, Any] = {
            "operationId": f"{endpoint.tags[0]}_{endpoint.handler.__name__}",
            "summary": endpoint.summary,
            "tags": list(endpoint.tags),
            "responses": {},
        }
        if endpoint.description:
            operation["description"] = endpoint.description
        parameters = [{"name": name, "in": "path", "required": True,
                       "schema": {"type": "string", "format": "uuid"}} for name in endpoint.path_params]
        if endpoint.query is not None:
            for name, info in endpoint.query.model_fields.items():
                parameters.append({"name": name, "in": "query", "required": info.is_required(),
                                   "schema": endpoint.query.model_json_schema()["properties"][name]})
        if parameters:
            operation["parameters"] = parameters
        if endpoint.body is not None:
            operation["requestBody"] = {"required": True,
                                        "content": {"application/json": {"schema": ref(endpoint.body, "validation")}}}
        if endpoint.uploads:
            operation["requestBody"] = {"required": True, "content": {
                media: {"schema": {"type": "string", "contentMediaType": media}} for media in endpoint.uploads}}
        success: dict[str, Any] = {"description": "Success"}
        if endpoint.response is not None:
            success["content"] = {"application/json": {"schema": ref(endpoint.response, "serialization")}}
        elif endpoint.produces is not None:
            success["content"] = {endpoint.produces: {"schema": {"type": "string",
                                                                 "contentMediaType": endpoint.produces}}}
        operation["responses"][str(endpoint.status)] = success
        problem = {"application/problem+json": {"schema": ref(Problem, "serialization")}}
        statuses = set(endpoint.errors)
        if endpoint.body is not None or endpoint.uploads:
            statuses |= {400, 413, 415, 422}
        if not endpoint.public:
            statuses |= {401}
            operation["security"] = [{"bearerAuth": []}, {"cookieAuth": []}]
            if endpoint.roles is not None:
                statuses |= {403}
                operation["x-roles"] = sorted(role.value for role in endpoint.roles)
        else:
            operation["security"] = []
        for status in sorted(statuses):
            operation["responses"][str(status)] = {"description": _STATUS_TEXT.get(status, "Error"),
                                                   "content": problem}
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "Errors are RFC 9457 problem documents (application/problem+json)."},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "telemed_access",
                               "description": "Browser pages; changes also need the X-CSRF-Token header"},
            },
        },
    }
