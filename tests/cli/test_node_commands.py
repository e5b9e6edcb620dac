"""`pcnet nodes list|invite|approve|reject|delete`: node enrolment from the server's shell, on
both engines, run as an administrator would (the real command in a subprocess)."""

import pytest
import pytest_twisted

from tests.support.db import ENGINES, postgres_database, postgres_url, skip_unless_postgres_enabled

from tests.cli.test_admin_commands import open_store, pcnet
from tests.fakes import peer


@pytest.fixture(params=ENGINES)
def data_dir(request, tmp_path):
    d = tmp_path / "data"
    if request.param == "sqlite":
        result = pcnet("init", "--data-dir", str(d), "--host", "localhost")
        assert result.returncode == 0, result.stderr
        yield d
        return
    skip_unless_postgres_enabled()
    with postgres_database() as dsn:
        result = pcnet("init", "--data-dir", str(d), "--host", "localhost", "--database",
                       postgres_url(dsn))
        assert result.returncode == 0, result.stderr
        yield d


def nodes(data_dir, *args):
    return pcnet("nodes", args[0], "--config", str(data_dir / "pcnet.toml"), *args[1:])


async def check(data_dir, role, name, credential, code=None, host="192.0.2.7"):
    """A node's hello as the server judges it (the registry on the same database)."""
    from twisted.internet import reactor

    from pcnet.app.services import Services

    store = await open_store(data_dir)
    try:
        registry = Services(store, reactor).nodes.registry()
        return await registry.check(role, name, credential, peer(host), code)
    finally:
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_invite_enrol_list_approve_reject_delete(data_dir):
    from pcnet.net.registry import NodeStatus

    invited = nodes(data_dir, "invite", "print01")
    assert invited.returncode == 0, invited.stderr
    code = invited.stdout.strip()
    assert len(code) >= 32 and "\n" not in code
    assert "print01" in invited.stderr and "[server] enrolment_code" in invited.stderr
    listing = nodes(data_dir, "list")
    assert listing.returncode == 0 and "print01" in listing.stdout and code not in listing.stdout

    site = nodes(data_dir, "invite", "site-north", "--role", "site", "--expires", "2")
    assert site.returncode == 0 and "waits for approval" in site.stderr

    assert await check(data_dir, "provider", "print01", "cred-1", "wrong") is NodeStatus.REJECTED
    assert await check(data_dir, "provider", "print01", "cred-1", code) is NodeStatus.APPROVED
    assert await check(data_dir, "site", "site-north", "cred-2", site.stdout.strip()) is NodeStatus.PENDING
    listing = nodes(data_dir, "list").stdout
    rows = {line.split()[0]: line.split() for line in listing.splitlines() if line.strip()}
    assert rows["print01"][:4] == ["print01", "provider", "approved", "192.0.2.7"]
    assert rows["site-north"][:3] == ["site-north", "site", "pending"]
    assert "INVITED" not in listing  # both codes used

    approved = nodes(data_dir, "approve", "site-north")
    assert approved.returncode == 0 and "is approved" in approved.stdout
    assert await check(data_dir, "site", "site-north", "cred-2") is NodeStatus.APPROVED
    rejected = nodes(data_dir, "reject", "print01")
    assert rejected.returncode == 0 and "is rejected" in rejected.stdout
    assert await check(data_dir, "provider", "print01", "cred-1") is NodeStatus.REJECTED

    deleted = nodes(data_dir, "delete", "print01")
    assert deleted.returncode == 0, deleted.stderr
    again = nodes(data_dir, "delete", "print01")
    assert again.returncode == 1 and again.stderr.strip() == "pcnet: node 'print01' is not known"
    # The name is free again, for a code only.
    assert await check(data_dir, "provider", "print01", "cred-3") is NodeStatus.REJECTED
    code = nodes(data_dir, "invite", "print01").stdout.strip()
    assert await check(data_dir, "provider", "print01", "cred-3", code) is NodeStatus.APPROVED


def test_invite_refuses_bad_names_hours_and_a_name_of_another_role(data_dir):
    for args, fragment in ((("has space",), "node name"), (("a/b",), "node name"),
                           (("p", "--expires", "0"), "--expires"),
                           (("p", "--expires", "100000"), "--expires")):
        result = nodes(data_dir, "invite", *args)
        assert result.returncode == 1 and fragment in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    assert nodes(data_dir, "invite", "mfd-1", "--role", "device").returncode == 0
    listing = nodes(data_dir, "list").stdout
    assert "mfd-1" in listing and "device" in listing


@pytest_twisted.ensureDeferred
async def test_invite_for_a_name_of_another_role_is_a_conflict(data_dir):
    code = nodes(data_dir, "invite", "x1").stdout.strip()
    await check(data_dir, "provider", "x1", "c", code)
    result = nodes(data_dir, "invite", "x1", "--role", "site")
    assert result.returncode == 1 and "delete it before inviting" in result.stderr
