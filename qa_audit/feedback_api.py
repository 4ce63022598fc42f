"""REST endpoints for a patient's feedback on their consultation: give it once, read it back.

Patients only: the consultation is reached through the scheduling domain's viewer check, so another patient's
consultation answers 404 exactly as a missing one does.
"""

from __future__ import annotations

from aiohttp import web

from qa_audit import feedback as service
from qa_audit import services as qa
from qa_audit.feedback_schemas import FeedbackIn, FeedbackOut
from server import keys
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.parsing import path_uuid
from server.http.principal import Principal, audit_context, authenticate
from server.http.responses import json_response
from server.http.routing import ApiRouter
from server.scheduling.services import Viewer

router = ApiRouter("feedback")
PATH = "/api/v1/consultations/{consultation_id}/feedback"


def patient_viewer(principal: Principal) -> Viewer:
    """The patient as the scheduling domain's access check sees them."""
    return Viewer(principal.user_id, principal.role, principal.patient_id)


@router.route("POST", PATH, summary="Rate my finished consultation, with a complaint if I wish (once)",
              body=FeedbackIn, response=FeedbackOut, status=201, roles=[Role.patient], errors=(404, 409))
async def give_feedback(request: web.Request, body: FeedbackIn) -> web.Response:
    """1 to 5 stars and, optionally, a complaint (whatever the rating). Only once the consultation has taken place
    (409 `consultation_not_finished`) and only once (409 `feedback_already_given`). A complaint or a low rating
    puts the consultation in the QA audit's sample."""
    principal = await authenticate(request)
    consultation_id = path_uuid(request, "consultation_id")
    async with tx(request) as session:
        feedback = await service.give_feedback(
            session, consultation_id=consultation_id, viewer=patient_viewer(principal), rating=body.rating,
            complaint=body.complaint, ctx=audit_context(request),
            policy=qa.policy_from(request.app[keys.settings]), now=utcnow())
    return json_response(FeedbackOut.model_validate(feedback), status=201)


@router.route("GET", PATH, summary="The feedback I gave on my consultation", response=FeedbackOut,
              roles=[Role.patient], errors=(404,))
async def get_feedback(request: web.Request) -> web.Response:
    """404 `feedback_not_found` until feedback is given; 404 `not_found` for another patient's consultation."""
    principal = await authenticate(request)
    consultation_id = path_uuid(request, "consultation_id")
    async with read(request) as session:
        feedback = await service.own_feedback(session, consultation_id=consultation_id,
                                              viewer=patient_viewer(principal))
    return json_response(FeedbackOut.model_validate(feedback))
