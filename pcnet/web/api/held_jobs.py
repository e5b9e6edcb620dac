"""/held-jobs and /me: release and cancel held jobs, for administrators and for their owners
(`pcnet.app.services.held_jobs`)."""

from __future__ import annotations

from pcnet.domain import rules as R
from pcnet.web import _schemas as S
from pcnet.web._fields import Object, Ref, String
from pcnet.web.api._base import PAGING, PRINTER_REF, USER_REF, ApiBase, ref
from pcnet.web.api.jobs import JOB

route = ApiBase.route

HELD_RELEASE = Object({
    "printer": Ref("printer", nullable=True,
                   description="Find-Me: the printer to print at (same print server, same page "
                               "description language); omit for a job held on a physical printer"),
})
HELD_CANCEL = Object({
    "reason": String(rule=R.REASON, default="cancelled by an administrator",
                     description="recorded in the job log"),
})
MY_CANCEL = Object({
    "reason": String(rule=R.REASON, description="recorded in the job log after who cancelled it"),
})


def _printer(body) -> object:
    printer = (body or {}).get("printer")
    return None if printer is None else ref(printer)


class HeldJobRoutes(ApiBase):
    @route("GET", "/held-jobs", summary="Jobs held for release, newest first", tag="held jobs",
           query={**PAGING, "user": USER_REF, "printer": PRINTER_REF}, response=S.JOB_PAGE,
           errors=(400, 404),
           description="Jobs on printers with a hold or Find-Me hold mode that wait for their owner "
                       "or an administrator. They are not charged until they print.")
    async def list_held_jobs(self, call):
        q = call.query
        jobs, total = await self.services.held_jobs.list(
            user=ref(q["user"]) if "user" in q else None,
            printer=ref(q["printer"]) if "printer" in q else None,
            offset=q["offset"], limit=q["limit"])
        return S.page_json(jobs, total, q["offset"], q["limit"], S.job_json)

    @route("POST", "/held-jobs/<job>/release", summary="Release a held job", tag="held jobs",
           params={"job": JOB}, body=HELD_RELEASE, response=S.JOB, errors=(400, 404, 409, 503),
           description="The print server holding the job releases it and it prints; it is charged "
                       "when the print server reports it printed. A Find-Me job is released at a "
                       "chosen `printer` (same print server, same page description language) and "
                       "charged with that printer's cost model. 409 when the job is not held or the "
                       "account cannot pay; 503 when its print server is not connected. The job "
                       "keeps who released it (`released_by`).")
    async def release_held_job(self, call):
        job = await self.services.held_jobs.release(call.actor, call.params["job"],
                                                    printer=_printer(call.body))
        return S.job_json(job)

    @route("POST", "/held-jobs/<job>/cancel", summary="Cancel a held job", tag="held jobs",
           params={"job": JOB}, body=HELD_CANCEL, response=S.JOB, errors=(400, 404, 409),
           description="The job is never printed nor charged; its print server deletes it (at once, "
                       "or when it reconnects). The job keeps who cancelled it (`cancelled_by`).")
    async def cancel_held_job(self, call):
        job = await self.services.held_jobs.cancel(
            call.actor, call.params["job"], reason=(call.body or {}).get("reason"))
        return S.job_json(job)


class MeRoutes(ApiBase):
    """The signed-in user: their record, balance and own held jobs (HTTP Basic)."""

    @route("GET", "/me", summary="Who you are and your balance", tag="me", scheme="basic",
           response=S.ME, errors=(),
           description="Your user record (never password or PIN hashes) and the balance of your "
                       "personal account. Sign in with your username and password (HTTP Basic).")
    async def me(self, call):
        account = None
        if call.user.personal_account_id is not None:
            account = await self.services.accounts.get(call.user.personal_account_id)
        return S.me_json(call.user, account)

    @route("GET", "/me/held-jobs", summary="Your jobs held for release, newest first", tag="me",
           scheme="basic", query={**PAGING, "printer": PRINTER_REF}, response=S.JOB_PAGE,
           errors=(400, 404),
           description="Only your own jobs, on printers with a hold or Find-Me hold mode; `printer` "
                       "narrows the list to the queue they are held on.")
    async def my_held_jobs(self, call):
        q = call.query
        jobs, total = await self.services.held_jobs.list(
            user=call.user.id, printer=ref(q["printer"]) if "printer" in q else None,
            offset=q["offset"], limit=q["limit"])
        return S.page_json(jobs, total, q["offset"], q["limit"], S.job_json)

    @route("POST", "/me/held-jobs/<job>/release", summary="Release one of your held jobs", tag="me",
           scheme="basic", params={"job": JOB}, body=HELD_RELEASE, response=S.JOB,
           errors=(400, 404, 409, 503),
           description="As `POST /held-jobs/{job}/release`, for your own jobs only (another user's "
                       "job is 404). The job log records that you released it.")
    async def release_my_held_job(self, call):
        job = await self.services.held_jobs.release(call.actor, call.params["job"],
                                                    printer=_printer(call.body))
        return S.job_json(job)

    @route("POST", "/me/held-jobs/<job>/cancel", summary="Cancel one of your held jobs", tag="me",
           scheme="basic", params={"job": JOB}, body=MY_CANCEL, response=S.JOB,
           errors=(400, 404, 409),
           description="As `POST /held-jobs/{job}/cancel`, for your own jobs only (another user's "
                       "job is 404). The job log records `cancelled by <you>` and your `reason`.")
    async def cancel_my_held_job(self, call):
        job = await self.services.held_jobs.cancel(call.actor, call.params["job"],
                                                   reason=(call.body or {}).get("reason"))
        return S.job_json(job)
