"""A patient's right to know who accessed their data."""

from __future__ import annotations

from aiohttp import web

from server.audit import schemas, services
from server.auth.models import Role
from server.http.context import read
from server.http.principal import authenticate
from server.http.problems import NotFound
from server.http.responses import json_response
from server.http.routing import ApiRouter

router = ApiRouter("audit")


@router.route("GET", "/api/v1/me/access-log", summary="Who accessed my data, newest first",
              query=schemas.AccessLogQuery, response=schemas.AccessLogOut, roles=[Role.patient])
async def my_access_log(request: web.Request, query: schemas.AccessLogQuery) -> web.Response:
    principal = await authenticate(request)
    if principal.patient_id is None:  # every patient account has a patient row; be safe anyway
        raise NotFound()
    async with read(request) as session:
        rows = await services.access_log(session, patient_id=principal.patient_id,
                                         patient_user_id=principal.user_id, limit=query.limit,
                                         before_seq=query.before)
    items = [schemas.AccessLogItemOut(at=i.at, action=i.action, object_type=i.object_type, outcome=i.outcome,
                                      actor_role=i.actor_role, actor_name=i.actor_name, by_you=i.by_patient_self)
             for _, i in rows]
    next_before = rows[-1][0] if len(rows) == query.limit else None
    return json_response(schemas.AccessLogOut(items=items, next_before=next_before))
