"""A simulated MFD for the `mfd` reference driver: the device's web services, and a scripted
panel (the device's browser) that drives the driver's panel pages. In memory with StubTreq.

The web services (what `drivers/mfd.py` calls; docs/drivers.md describes them), HTTP Basic as
the device's administrator:

- `POST /ws/v1/session` `{"user": NAME, "pages": N|null, "colour_pages": N|null}`: unlock
  copying, scanning and faxing for a user, at most that many pages (null: no limit); answers
  `{"session": ID}`;
- `DELETE /ws/v1/session`: lock the device again;
- `GET /ws/v1/joblog?after=SEQ`: the jobs done since `SEQ`: `{"jobs": [{"seq", "session",
  "kind", "pages", "colour_pages", "duplex", "paper_size", "completed_at"}], "last": SEQ}`.

`FakeMfd.copy(...)`, `.scan(...)`, `.fax(...)` are what a person does at the unlocked device
(refused when locked or past the limit, as a real device's accounting would).
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from klein import Klein


@dataclass
class DeviceJob:
    seq: int
    session: str
    kind: str
    pages: int
    colour_pages: int
    duplex: bool
    paper_size: str
    completed_at: str


class FakeMfd:
    app = Klein()

    def __init__(self, *, admin: str = "admin", password: str = "mfd-admin-secret"):
        self._auth = "Basic " + base64.b64encode(f"{admin}:{password}".encode()).decode()
        self.session: dict | None = None
        self.jobs: list[DeviceJob] = []
        self.requests: list[tuple[str, str]] = []
        self._sessions = 0
        self.available = True

    def resource(self):
        return self.app.resource()

    # --- what a person does at the device ----------------------------------------------------

    def _do(self, kind, pages, colour_pages=0, duplex=False, paper_size="A4") -> DeviceJob:
        s = self.session
        if s is None:
            raise PermissionError("the device is locked")
        if s["pages"] is not None and s["used"] + pages > s["pages"]:
            raise PermissionError("over the session's page limit")
        if s["colour_pages"] is not None and s["used_colour"] + colour_pages > s["colour_pages"]:
            raise PermissionError("over the session's colour limit")
        s["used"] += pages
        s["used_colour"] += colour_pages
        job = DeviceJob(len(self.jobs) + 1, s["id"], kind, pages, colour_pages, duplex, paper_size,
                        datetime.now(timezone.utc).isoformat())
        self.jobs.append(job)
        return job

    def copy(self, pages, colour_pages=0, duplex=False, paper_size="A4"):
        return self._do("copy", pages, colour_pages, duplex, paper_size)

    def scan(self, pages, colour_pages=0):
        return self._do("scan", pages, colour_pages)

    def fax(self, pages):
        return self._do("fax", pages)

    @property
    def locked(self) -> bool:
        return self.session is None

    # --- the web services ----------------------------------------------------------------------

    def _check(self, request):
        self.requests.append((request.method.decode(), request.path.decode()))
        if not self.available:
            request.setResponseCode(503)
            return {"error": "unavailable"}
        if request.getHeader("authorization") != self._auth:
            request.setResponseCode(401)
            return {"error": "unauthorized"}
        return None

    @staticmethod
    def _json(request, value):
        request.setHeader("content-type", "application/json")
        return json.dumps(value).encode()

    @app.route("/ws/v1/session", methods=["POST"])
    def unlock(self, request):
        problem = self._check(request)
        if problem:
            return self._json(request, problem)
        body = json.loads(request.content.read() or b"{}")
        self._sessions += 1
        self.session = {"id": f"s{self._sessions}", "user": body.get("user"),
                        "pages": body.get("pages"), "colour_pages": body.get("colour_pages"),
                        "used": 0, "used_colour": 0}
        return self._json(request, {"session": self.session["id"]})

    @app.route("/ws/v1/session", methods=["DELETE"])
    def lock(self, request):
        problem = self._check(request)
        if problem:
            return self._json(request, problem)
        self.session = None
        return self._json(request, {"locked": True})

    @app.route("/ws/v1/joblog", methods=["GET"])
    def joblog(self, request):
        problem = self._check(request)
        if problem:
            return self._json(request, problem)
        after = int(request.args.get(b"after", [b"0"])[0])
        jobs = [asdict(j) for j in self.jobs if j.seq > after]
        return self._json(request, {"jobs": jobs, "last": self.jobs[-1].seq if self.jobs else 0})


class ScriptedPanel:
    """The device's browser showing the driver's panel pages: `await panel.sign_in_card("1234")`,
    `await panel.page("/panel/home")`. Each call returns (status, html)."""

    def __init__(self, stub, key: str = ""):
        self.stub = stub
        self.key = key

    def _url(self, path):
        return f"http://panel.invalid{path}" + (f"?key={self.key}" if self.key else "")

    async def page(self, path="/panel"):
        import treq

        r = await self.stub.get(self._url(path))
        return r.code, (await treq.text_content(r))

    async def post(self, path, **fields):
        import treq

        r = await self.stub.post(self._url(path), data=fields)
        return r.code, (await treq.text_content(r))

    def sign_in_card(self, card, pin=None):
        return self.post("/panel/sign-in", card=card, **({"pin": pin} if pin else {}))

    def sign_in_password(self, username, password):
        return self.post("/panel/sign-in", username=username, password=password)

    def sign_out(self):
        return self.post("/panel/sign-out")

    def release(self, job="all"):
        return self.post("/panel/release", job=job)

    def choose_account(self, account_id):
        return self.post("/panel/account", account=str(account_id))
