"""Declaring API endpoints once: route, who may call, body and response models, and so OpenAPI.

Each domain's `api.py` fills an `ApiRouter`; the wrapper authenticates, checks the role, parses and
validates the body, so a handler only calls its service and serialises the answer.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from server import keys
from server.auth.models import Role
from server.http.parsing import parse_json, parse_query
from server.http.principal import authenticate, check_access

Handler = Callable[..., Awaitable[web.StreamResponse]]


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tags: tuple[str, ...]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    roles: frozenset[Role] | None = None  # None: any signed-in user
    public: bool = False
    allow_mfa_pending: bool = False
    errors: tuple[int, ...] = ()
    description: str | None = None
    uploads: tuple[str, ...] = ()  # media types of a raw (non-JSON) body the handler reads itself
    produces: str | None = None  # media type of a non-JSON answer (a PDF, a signature)

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"{(\w+)", self.path)


@dataclass
class ApiRouter:
    tag: str
    endpoints: list[Endpoint] = field(default_factory=list)

    def route(self, method: str, path: str, *, summary: str, body: type[BaseModel] | None = None,
              query: type[BaseModel] | None = None, response: type[BaseModel] | None = None,
              status: int = 200, roles: Collection[Role] | None = None, public: bool = False,
              allow_mfa_pending: bool = False, errors: tuple[int, ...] = (), uploads: tuple[str, ...] = (),
              produces: str | None = None) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            endpoint = Endpoint(method, path, handler, summary, (self.tag,), body, query, response, status,
                                frozenset(roles) if roles is not None else None, public,
                                allow_mfa_pending, errors, (handler.__doc__ or "").strip() or None, uploads, produces)
            self.endpoints.append(endpoint)
            return handler
        return register

    def add_to(self, app: web.Application) -> None:
        for endpoint in self.endpoints:
            app.router.add_route(endpoint.method, endpoint.path, _guarded(endpoint),
                                 name=f"{self.tag}.{endpoint.handler.__name__}")
        app.setdefault(_ENDPOINTS, []).extend(self.endpoints)


_ENDPOINTS: web.AppKey[list[Endpoint]] = web.AppKey("api_endpoints")


def registered_endpoints(app: web.Application) -> list[Endpoint]:
    if _ENDPOINTS not in app:
        return []
    endpoints: list[Endpoint] = app[_ENDPOINTS]
    return list(endpoints)


def _guarded(endpoint: Endpoint) -> Handler:
    @functools.wraps(endpoint.handler)
    async def handler(request: web.Request) -> web.StreamResponse:
        if not endpoint.public:
            check_access(await authenticate(request), roles=endpoint.roles,
                         allow_mfa_pending=endpoint.allow_mfa_pending,
                         admin_mfa_required=request.app[keys.settings].admin_mfa_required)
        kwargs: dict[str, Any] = {}
        if endpoint.body is not None:
            kwargs["body"] = await parse_json(request, endpoint.body)
        if endpoint.query is not None:
            kwargs["query"] = parse_query(request, endpoint.query)
        return await endpoint.handler(request, **kwargs)

    return handler
