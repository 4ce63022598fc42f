"""Serialising pydantic models to JSON responses in one place."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel


def json_response(model: BaseModel, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status, content_type="application/json",
                        headers=headers)
