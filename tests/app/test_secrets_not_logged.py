"""No secret is ever logged: the main flows driven with recognisable secrets, on both engines,
with every log event and the HTTP access log captured and searched for them.

The secrets: a database password (in the PostgreSQL URL), user passwords and PINs, a shared
account's PIN, API tokens (in headers and in query strings), node credentials and enrolment
codes (good and guessed). The flows go through the real HTTP site (`PcnetSite`, its access log
included), the admin API, the pcnet/1 hello with the store-backed registry, and start-up against
an unreachable database.
"""

from __future__ import annotations

import base64
import io
import json

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from pcnet.app.services import Services
from pcnet.domain.secrets import hash_token, new_token
from pcnet.errors import StoreUnavailable
from pcnet.net.line import LineServerFactory, Operations
from pcnet.store import open_store
from pcnet.web.api import AdminApi
from pcnet.web.site import PcnetSite
from tests.fakes import peer
from tests.support.db import database_url, postgres_url

MARK = "XYZZY"
DB_PASSWORD = f"db-pw-{MARK}-1"
USER_PASSWORD = f"user-pw-{MARK}-2"
WRONG_PASSWORD = f"wrong-pw-{MARK}-3"
USER_PIN = "4242" + MARK
SHARED_PIN = "9191" + MARK
BAD_TOKEN = f"bad-token-{MARK}-4"
CREDENTIAL = f"node-credential-{MARK}-5" + "c" * 20
GUESSED_CODE = f"guessed-code-{MARK}-6"


async def http(site, method, path, body=None, *, token=None, basic=None):
    """One request through the real site on an in-memory transport; (status, parsed body)."""
    # HTTP/1.0: the reply is not chunked and the connection closes after it.
    headers = [f"{method} {path} HTTP/1.0", "Host: pcnet.test",
               "User-Agent: secrets-test", f"Referer: http://pcnet.test/x?token={BAD_TOKEN}"]
    if token:
        headers.append(f"Authorization: Bearer {token}")
    if basic:
        headers.append("Authorization: Basic " + base64.b64encode(":".join(basic).encode()).decode())
    data = b""
    if body is not None:
        data = json.dumps(body).encode()
        headers += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    protocol = site.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(("\r\n".join(headers) + "\r\n\r\n").encode() + data)
    for _ in range(2000):  # bounded: the API answers off the reactor thread (hashing, store)
        if transport.disconnecting:
            break
        await task.deferLater(reactor, 0.005, lambda: None)
    protocol.connectionLost(Failure(ConnectionDone()))
    head, _, payload = transport.value().partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(payload) if payload.strip() else None


@pytest.fixture
def url(engine, tmp_path):
    with database_url(engine, tmp_path) as plain:
        # The test server trusts every connection, so a password in the URL is accepted.
        yield postgres_url(plain, password=DB_PASSWORD) if engine == "postgres" else plain


@pytest_twisted.ensureDeferred
async def test_the_main_flows_never_log_a_secret(url):
    access_log = io.StringIO()
    secrets = [DB_PASSWORD, USER_PASSWORD, WRONG_PASSWORD, USER_PIN, SHARED_PIN, BAD_TOKEN,
               CREDENTIAL, GUESSED_CODE]
    with capturedLogs() as events:
        store = open_store(url, reactor=reactor)
        await store.start()
        try:
            admin = await store.create_user("root", admin=True, restricted=False)
            token = new_token()
            await store.create_api_token("tests", hash_token(token), user_id=admin.id)
            services = Services(store, reactor)
            registry = services.nodes.registry()
            api = AdminApi(services, reactor)
            root = Resource()
            api.mount(root)
            site = PcnetSite(root)
            site.logFile = access_log

            status, _ = await http(site, "POST", "/api/v1/users", {
                "username": "alice", "password": USER_PASSWORD, "pin": USER_PIN}, token=token)
            assert status == 201
            status, _ = await http(site, "POST", "/api/v1/accounts", {
                "name": "Physics", "pin": SHARED_PIN}, token=token)
            assert status == 201
            status, created = await http(site, "POST", "/api/v1/tokens", {"name": "export"}, token=token)
            assert status == 201
            new = created["token"]
            secrets += [token, new]
            assert (await http(site, "GET", "/api/v1/users", token=new))[0] == 200
            assert (await http(site, "GET", f"/api/v1/users?token={new}&limit=5"))[0] == 401
            assert (await http(site, "GET", f"/api/v1/users?access_token={BAD_TOKEN}"))[0] == 401
            assert (await http(site, "GET", "/api/v1/users", token=BAD_TOKEN))[0] == 401
            assert (await http(site, "GET", "/api/v1/me", basic=("alice", USER_PASSWORD)))[0] == 200
            assert (await http(site, "GET", "/api/v1/me", basic=("alice", WRONG_PASSWORD)))[0] == 401
            status, invited = await http(site, "POST", "/api/v1/node-invitations",
                                         {"name": "print01"}, token=token)
            assert status == 201
            code = invited["code"]
            secrets.append(code)

            # pcnet/1 hellos: the enrolment, a guess, a squatter with the spent code.
            factory = LineServerFactory(Operations(), registry, clock=task.Clock())
            for credential, enrolment in ((CREDENTIAL, code), (CREDENTIAL + "2", GUESSED_CODE),
                                          (CREDENTIAL + "3", code)):
                protocol = factory.buildProtocol(None)
                transport = StringTransport(peerAddress=peer("192.0.2.1"))
                protocol.makeConnection(transport)
                protocol.dataReceived(json.dumps({
                    "op": "hello", "id": 1, "version": 1, "role": "provider", "node": "print01",
                    "credential": credential, "enrolment_code": enrolment}).encode() + b"\n")
                for _ in range(2000):
                    if transport.value().endswith(b"\n"):
                        break
                    await task.deferLater(reactor, 0.005, lambda: None)
                assert b'"re":1' in transport.value()
                protocol.connectionLost(Failure(ConnectionDone()))
            assert (await store.get_node("print01")).status == "approved"
            # The audit log records every change above, and none of its secrets.
            audit, total = await store.list_audit(limit=1000)
            assert total >= 4
            audited = repr(audit)
            assert "scrypt$" not in audited and "'password': 'set'" in audited
            secrets_in_audit = [x for x in secrets + [code] if x in audited]
            assert secrets_in_audit == []
        finally:
            await store.stop()

        if url.startswith("postgresql://"):
            # Start-up against an unreachable server, the password in its URL.
            dead = url.replace("@127.0.0.1:5432/", "@127.0.0.1:1/")
            with pytest.raises(StoreUnavailable) as failed:
                await open_store(dead, reactor=reactor).start()
            assert DB_PASSWORD not in failed.value.message and "127.0.0.1:1/" in failed.value.message

    logged = "\n".join(formatEvent(e) + " " + repr(e) for e in events) + access_log.getvalue()
    assert "POST /api/v1/users" in access_log.getvalue()   # the access log was written to
    assert "/api/v1/users?token&limit" in access_log.getvalue()
    assert "enrolled with an enrolment code" in logged and "rejected" in logged  # events captured
    for secret in secrets:
        assert secret not in logged, f"{secret!r} was logged"
    assert MARK not in logged
