"""/jobs: the job log and job import (`pcnet.app.services.jobs`)."""

from __future__ import annotations

from pcnet.domain import rules as R
from pcnet.domain.model import JobStatus
from pcnet.web import _schemas as S
from pcnet.web._fields import Boolean, Choice, Integer, JobRef, Object, Ref, String, Timestamp, Uuid
from pcnet.web.api._base import (
    ACCOUNT_REF,
    IDEMPOTENCY_KEY,
    PAGING,
    PRINTER_REF,
    USER_REF,
    ApiBase,
    ledger_uuid,
    ref,
)

route = ApiBase.route

#: How a URL names a job: by uuid (the integer id of its job log row works too).
JOB = JobRef(description="the job's uuid (its `id` in the job log is accepted too)")

JOB_IMPORT = Object({
    "username": String(rule=R.JOB_USERNAME, required=True),
    "printer": Ref("printer", required=True),
    # Up to what the job log stores: a job over the server's job limits is denied (and logged)
    # by the decision, as on every other way in.
    "pages": Integer(rule=R.JOB_PAGES, required=True, description="pages of one copy"),
    "colour_pages": Integer(rule=R.JOB_PAGES, default=0),
    "duplex": Boolean(default=False),
    "copies": Integer(rule=R.JOB_COPIES, default=1),
    "paper_size": String(rule=R.PAPER_SIZE,
                         description="default: the server's `[jobs] paper_size` (A4 unless set)"),
    "document_name": String(rule=R.DOCUMENT_NAME, default=""),
    "account": Ref("account", nullable=True,
                   description="a shared account to charge instead of the user's personal one"),
    "client": String(rule=R.CLIENT, default="", description="the submitting machine"),
    "uuid": Uuid(description="the job's identity; a repeat is recorded and charged once"),
})
JOB_FILTERS = {
    **PAGING,
    "user": USER_REF, "printer": PRINTER_REF, "account": ACCOUNT_REF,
    "status": Choice(JobStatus),
    "since": Timestamp(description="jobs at or after this time"),
    "until": Timestamp(description="jobs before this time"),
    "problem": Boolean(description="true: only jobs with a problem for an administrator (printed "
                                   "offline outside the job limits or the account rules); false: "
                                   "only jobs without one"),
}


class JobRoutes(ApiBase):
    @route("GET", "/jobs", summary="The job log, newest first", tag="jobs", query=JOB_FILTERS,
           response=S.JOB_PAGE, errors=(400, 404))
    async def list_jobs(self, call):
        q = dict(call.query)
        offset, limit = q.pop("offset"), q.pop("limit")
        for key in ("user", "printer", "account"):
            if key in q:
                q[key] = ref(q[key])
        jobs, total = await self.services.jobs.list(offset, limit, **q)
        return S.page_json(jobs, total, offset, limit, S.job_json)

    @route("GET", "/jobs/<job>", summary="One job of the log", tag="jobs",
           params={"job": JOB}, response=S.JOB, errors=(400, 404))
    async def get_job(self, call):
        return S.job_json(await self.services.jobs.get(call.params["job"]))

    @route("POST", "/jobs/import", summary="Charge an externally reported job", tag="jobs",
           headers=IDEMPOTENCY_KEY, body=JOB_IMPORT, response=S.IMPORT_RESULT, errors=(400, 404, 409),
           description="Runs the same validation and decision as a printed job (the job limits, "
                       "filters, account, balance) and, if it prints, charges it and writes the job "
                       "log in one transaction. The reply is 200 with the decision whatever it is: "
                       "a denied job (`decision.action` deny, with its reason) is logged and not "
                       "charged. Idempotent with `uuid` or an `Idempotency-Key` header: a repeat "
                       "returns what was decided the first time; the same uuid with other details "
                       "is 409 `idempotency_conflict`.")
    async def import_job(self, call):
        b = dict(call.body)
        b.pop("uuid", None)
        printer, account = ref(b.pop("printer")), b.pop("account", None)
        decision, job, charged = await self.services.jobs.import_job(
            call.actor, printer=printer, account=None if account is None else ref(account),
            uuid=ledger_uuid(call), **b)
        return {
            "decision": S.decision_json(decision), "cost": S.money(decision.cost),
            "charged": JobStatus(job.status) is JobStatus.PRINTED and decision.cost > 0,
            "job": S.job_json(job),
            "account": S.account_json(charged) if charged is not None else None,
            "balance": S.money(charged.balance) if charged is not None else None,
        }
