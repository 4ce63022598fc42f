"""A physician's QA reviews (`/qa/my-reviews`): the done reviews of their own consultations, never a draft about
them, never a colleague's (the 404 page), never who the expert was.

Each review (`/qa/my-reviews/{id}`) shows the score, the items failed with the expert's comments and moments of
the recording, the notes, and, while it waits for them, the physician's two answers: acknowledge it, or dispute it
with their reasons (a second expert then reviews). Opening one is in the access log, as through the API.
"""

from __future__ import annotations

from aiohttp import web

from qa_audit import materials, reviews, rules
from qa_audit.models import Review
from server import keys
from server.auth.models import Role
from server.db.base import utcnow
from server.http.context import read, tx
from server.http.principal import audit_context
from server.http.problems import NotFound, ProblemError
from server.settings import Settings
from web.i18n import N_
from web.pages import PageHandler, page_handler, read_form, render
from web.qa_pages.queue import clinic_zone, not_found, page_reader, path_id
from web.qa_pages.review import clock

ANSWER_ERRORS = {"review_wrong_step": N_("This review has already been answered."),
                 "no_eligible_expert": N_("No other quality expert may review this consultation yet, so it cannot be "
                                          "disputed now. Please try again later or contact the clinic's "
                                          "administrator."),
                 "response": N_("Say what you disagree with, and why.")}

MAX_RESPONSE = 4000  # as the API's DisputeIn
TOO_LONG = N_("The answer is too long: at most 4000 characters.")


def _may_answer(review: Review) -> bool:
    return rules.next_status(review.status, "acknowledge", round_=review.round) is not None


async def my_reviews_page(request: web.Request) -> web.Response:
    """The physician's done reviews, newest first."""
    _, reader = await page_reader(request, {Role.physician})
    async with read(request) as db:
        found = await reviews.list_reviews(db, reader, limit=500)
        heads = await materials.headlines(db, {review.consultation_id for review in found})
    found.sort(key=lambda review: review.submitted_at or review.assigned_at, reverse=True)
    return await render(request, "qa/my_reviews.html", {
        "rows": [{"review": review, "headline": heads.get(review.consultation_id), "may_answer": _may_answer(review)}
                 for review in found], "zone": clinic_zone(request)})


async def my_review_response(request: web.Request, *, error: str | None = None, response_text: str = "",
                             status: int = 200) -> web.Response:
    principal, reader = await page_reader(request, {Role.physician})
    review_id = await path_id(request)
    try:
        async with tx(request) as db:
            review = await reviews.get(db, reader, review_id)
            await reviews.audit_opened(db, review, ctx=audit_context(request, principal), now=utcnow())
            template = await reviews.template_of(db, review)
            heads = await materials.headlines(db, [review.consultation_id])
            recordings = await materials.recordings(db, review.consultation_id)
    except NotFound:
        raise await not_found(request) from None
    items = {item["key"]: item for item in template.items}
    failed = [{"item": items[key], "entry": review.answers.get(key) or {}} for key in review.failed_items
              if key in items]
    return await render(request, "qa/my_review.html", {
        "review": review, "template": template, "headline": heads.get(review.consultation_id), "failed": failed,
        "notes": review.notes, "clock": clock, "may_answer": _may_answer(review), "error": error,
        "response_text": response_text, "recordings": [item.recording for item in recordings],
        "done": request.query.get("done"), "zone": clinic_zone(request)}, status=status)


async def my_review_page(request: web.Request) -> web.Response:
    return await my_review_response(request)


async def _answer(request: web.Request, action: str) -> web.Response:
    principal, reader = await page_reader(request, {Role.physician})
    review_id = await path_id(request)
    form = await read_form(request, back=f"/qa/my-reviews/{review_id}")
    text = form.get("response", "").strip()
    if action == "dispute" and not text:
        return await my_review_response(request, error=ANSWER_ERRORS["response"], status=422)
    if len(text) > MAX_RESPONSE:
        return await my_review_response(request, error=TOO_LONG, response_text=text, status=422)
    settings: Settings = request.app[keys.settings]
    try:
        async with tx(request) as db:
            review = await reviews.get(db, reader, review_id)
            if action == "dispute":
                await reviews.dispute(db, review, reader, response=text, settings=settings, now=utcnow(),
                                      ctx=audit_context(request, principal))
            else:
                await reviews.acknowledge(db, review, reader, now=utcnow(), ctx=audit_context(request, principal))
    except ProblemError as problem:
        if problem.status == 404:
            raise await not_found(request) from None
        if problem.code not in ANSWER_ERRORS:
            raise
        return await my_review_response(request, error=ANSWER_ERRORS[problem.code], response_text=text,
                                        status=problem.status)
    raise web.HTTPSeeOther(f"/qa/my-reviews/{review_id}?done={action}")


async def acknowledge_submit(request: web.Request) -> web.Response:
    return await _answer(request, "acknowledge")


async def dispute_submit(request: web.Request) -> web.Response:
    return await _answer(request, "dispute")


ROUTES: list[tuple[str, str, PageHandler]] = [
    ("GET", "/qa/my-reviews", my_reviews_page),
    ("GET", "/qa/my-reviews/{review_id}", my_review_page),
    ("POST", "/qa/my-reviews/{review_id}/acknowledge", acknowledge_submit),
    ("POST", "/qa/my-reviews/{review_id}/dispute", dispute_submit),
]


def setup(app: web.Application) -> None:
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, page_handler(handler))
