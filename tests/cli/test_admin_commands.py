"""The `pcnet` console command: CSV imports, token creation, analyse, and its error handling.

Each test runs the real command in a subprocess, as an administrator would.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytest_twisted

BIN = Path(sys.executable).parent
TESTDATA = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "spool"


def pcnet(*args):
    return subprocess.run([str(BIN / "pcnet"), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("pcnet") / "data"
    result = pcnet("init", "--data-dir", str(d), "--host", "localhost")
    assert result.returncode == 0, result.stderr
    return d


async def open_store(data_dir):
    from twisted.internet import reactor

    from pcnet.config import load
    from pcnet.store import open_store

    store = open_store(load(data_dir / "pcnet.toml").database_url, reactor=reactor)
    await store.start()
    return store


@pytest_twisted.ensureDeferred
async def test_import_users_creates_updates_and_reports_bad_rows(data_dir, tmp_path):
    csv = tmp_path / "users.csv"
    csv.write_text(
        "username,full_name,email,card_numbers,initial_balance,restricted,groups,pin\n"
        "bob,Bob B,bob@example.org,1111;2222,5.50,true,staff;print-team,1234\n"
        ",No Name,,,,,,\n"
        "carol,Carol C,,,1.5x,,,\n"
        "dave,Dave D,,,,no,staff,\n")
    result = pcnet("import-users", "--config", str(data_dir / "pcnet.toml"), str(csv))
    assert result.returncode == 1
    assert "2 created, 0 updated, 2 rejected" in result.stdout
    assert "line 3: username: must not be empty" in result.stderr
    assert "line 4: initial_balance" in result.stderr
    assert "Traceback" not in result.stderr

    csv.write_text("username,department\nbob,Physics\n")
    result = pcnet("import-users", "--config", str(data_dir / "pcnet.toml"), str(csv))
    assert result.returncode == 0 and "0 created, 1 updated" in result.stdout

    store = await open_store(data_dir)
    try:
        bob = await store.get_user_by_name("bob")
        assert bob.department == "Physics" and bob.full_name == "Bob B"
        assert set(bob.card_numbers) == {"1111", "2222"}
        assert bob.pin_hash and "1234" not in bob.pin_hash
        assert str((await store.get_account(bob.personal_account_id)).balance) == "5.5000"
        dave = await store.get_user_by_name("dave")
        assert not (await store.get_account(dave.personal_account_id)).restricted
        staff = await store.get_group_by_name("staff")
        assert {u.username for u in await store.group_members(staff.id)} == {"bob", "dave"}
    finally:
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_import_printers_with_prices_and_modes(data_dir, tmp_path):
    csv = tmp_path / "printers.csv"
    csv.write_text("name,server,queue,grey,colour,duplex_discount,hold_mode,failure_mode\n"
                   "lib-1,print01,lib1,0.05,0.40,0.01,hold,hold\n"
                   "lib-2,print01,lib2,0.05,,,sometimes,\n")
    result = pcnet("import-printers", "--config", str(data_dir / "pcnet.toml"), str(csv))
    assert result.returncode == 1
    assert "line 3: hold_mode: 'sometimes' is not one of" in result.stderr
    store = await open_store(data_dir)
    try:
        p = await store.get_printer_by_name("lib-1")
        assert (p.server, p.queue, p.hold_mode.value, p.failure_mode.value) == ("print01", "lib1", "hold", "hold")
        assert str(p.cost_model.colour) == "0.4000"
        # The command's changes are in the audit log as the OS user's, with the command line.
        (row,), _ = await store.list_audit(object_kind="printer", object_id=p.id)
        import getpass

        assert (row.action, row.actor, row.actor_name) == (
            "printer.create", f"cli:{getpass.getuser()}", getpass.getuser())
        assert row.detail == f"pcnet import-printers --config {data_dir / 'pcnet.toml'} {csv}"
        assert row.after["cost_model"]["colour"] == "0.4000" and row.address
    finally:
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_init_records_the_first_administrator_and_token_in_the_audit_log(data_dir):
    store = await open_store(data_dir)
    try:
        rows, _ = await store.list_audit(actor_kind="cli", action="token.create")
        assert rows and rows[-1].detail.startswith(f"pcnet init --data-dir {data_dir}")
        assert rows[-1].after["name"] == "admin (created by pcnet init)"
        created, _ = await store.list_audit(action="user.create")
        first = created[-1]
        assert (first.object_name, first.after["admin"], first.after["password"]) == (
            "admin", True, "set")
    finally:
        await store.stop()


def test_csv_amounts_must_be_written_as_documented(data_dir, tmp_path):
    """Amounts are exactly -?digits[.up to 4 digits] in CSV too: Decimal() would take these."""
    csv = tmp_path / "users.csv"
    csv.write_text("username,initial_balance\n"
                   'pad," 5 "\nunder,1_000\nplus,+5\nexp,1E+3\narabic,\u0663\ngood,5.25\n',
                   encoding="utf-8")
    result = pcnet("import-users", "--config", str(data_dir / "pcnet.toml"), str(csv))
    assert "1 created, 0 updated, 5 rejected" in result.stdout, result.stderr
    for line in range(2, 7):
        assert f"line {line}: initial_balance" in result.stderr


def test_csv_with_unknown_column_is_refused_whole(data_dir, tmp_path):
    csv = tmp_path / "users.csv"
    csv.write_text("username,fullname\nzed,Zed\n")
    result = pcnet("import-users", "--config", str(data_dir / "pcnet.toml"), str(csv))
    assert result.returncode == 1
    assert "unknown column(s) fullname" in result.stderr


def test_token_create_prints_a_token_that_the_store_knows_only_by_hash(data_dir):
    result = pcnet("token", "create", "--config", str(data_dir / "pcnet.toml"), "reports", "--user", "admin")
    assert result.returncode == 0
    token = result.stdout.strip()
    assert len(token) >= 40
    assert token.encode() not in (data_dir / "pcnet.db").read_bytes()
    refused = pcnet("token", "create", "--config", str(data_dir / "pcnet.toml"), "x", "--user", "nobody")
    assert refused.returncode == 1 and "nobody" in refused.stderr


def test_commands_with_a_bad_config_say_so_in_one_line(tmp_path):
    result = pcnet("token", "create", "--config", str(tmp_path / "missing.toml"), "x")
    assert result.returncode == 1
    assert result.stderr.strip() == f"pcnet: {tmp_path / 'missing.toml'}: configuration file not found"


def test_analyse_prints_one_json_object_per_file(tmp_path):
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\n garbage")
    result = pcnet("analyse", str(TESTDATA / "onepage-a4.pdf"), str(broken))
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 2
    assert lines[0]["pages"] == 1 and lines[0]["colour_pages"] == 1
    assert lines[1]["error"]
    assert result.returncode == 1
