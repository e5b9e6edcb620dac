"""What the `pcnet` console command does: initialise a data directory, import users and
printers from CSV, create API tokens, enrol and approve nodes.

Each command is a coroutine run once on a reactor by `run`. Secrets made here (the first
administrator's password, API tokens) are printed once to stdout and stored only as hashes.
"""

from __future__ import annotations

import csv
import re
import socket
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from twisted.internet import defer, task

from pcnet import config as configlib
from pcnet._files import private_directory, write_durably
from pcnet.domain.decision import valid_pattern
from pcnet.domain.enrolment import DEFAULT_CODE_HOURS, MAX_CODE_HOURS, NODE_NAME_HINT, NODE_NAME_PATTERN
from pcnet.domain.model import CostModel, FailureMode, Filters, HoldMode
from pcnet.domain.secrets import hash_secret, hash_token, new_token
from pcnet.errors import ConfigError, InvalidInput, NotFound, PcnetError
from pcnet.money import parse_money
from pcnet.store import password_of, redact_url

TRUE = {"1", "true", "yes", "y", "on"}
FALSE = {"0", "false", "no", "n", "off", ""}


def run(command, args) -> int:
    """Run `command(reactor, args)` to completion and return its exit status."""
    outcome = {}

    async def main(reactor):
        try:
            outcome["status"] = await command(reactor, args)
        except PcnetError as e:
            sys.stderr.write(f"pcnet: {e.message}\n")
            outcome["status"] = 1

    try:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    except SystemExit:
        pass
    return outcome.get("status", 1)


async def _open_started_store(reactor, cfg):
    from pcnet.store import open_store

    store = open_store(cfg.database_url, reactor=reactor, pool_size=min(cfg["database"]["pool_size"], 2))
    await store.start()
    return store


def default_hosts() -> list[str]:
    names = ["localhost", "127.0.0.1", "::1"]
    for name in (socket.gethostname(), socket.getfqdn()):
        if name and name not in names:
            names.append(name)
    return names


async def init(reactor, args) -> int:
    from pcnet.net.tls import TLSFiles

    data_dir = Path(args.data_dir).resolve()
    config_path = data_dir / "pcnet.toml"
    if config_path.exists():
        if args.if_missing:
            print(f"pcnet: {data_dir} is already initialised; nothing to do")
            return 0
        raise ConfigError(f"{config_path}: already exists; remove it or use another --data-dir")
    private_directory(data_dir)
    overrides = {"server": {"data_dir": "."}}
    if args.database:
        overrides["database"] = {"url": args.database}
    if args.http:
        overrides["server"]["http"] = args.http
    if args.tls:
        overrides["server"]["tls"] = args.tls
    text = configlib.render_example(overrides=overrides)
    cfg = configlib.parse(text, config_path)  # validates the overrides before anything is written

    hosts = args.host or default_hosts()
    tls_dir = data_dir / "tls"
    TLSFiles(tls_dir).ensure(hosts, ca_name=f"pcnet CA {socket.gethostname()}")

    store = await _open_started_store(reactor, cfg)
    try:
        password, token = new_token()[:20], new_token()
        user = await store.create_user(args.admin, full_name="Administrator", admin=True,
                                       password_hash=hash_secret(password), restricted=False)
        await store.create_api_token(f"{args.admin} (created by pcnet init)", hash_token(token), user_id=user.id)
    finally:
        await store.stop()
    # 0600: the file may hold the database password.
    write_durably(config_path, text.encode("utf-8"), 0o600)
    print(f"pcnet: initialised {data_dir}")
    print(f"  configuration:  {config_path}")
    print(f"  database:       {redact_url(cfg.database_url)}")
    print(f"  CA certificate: {tls_dir / 'ca.pem'} (valid for {', '.join(hosts)})")
    print(f"  administrator:  {args.admin}")
    print(f"  password:       {password}")
    print(f"  API token:      {token}")
    print("  (the password and token are shown only now: keep them)")
    if password_of(cfg.database_url):
        print(f"  note: the database password is stored in {config_path} (mode 0600); to keep it"
              " out of the file, remove it from [database] url and give it in PGPASSWORD or a"
              " PGPASSFILE (see docs/security.md)")
    return 0


def _bool(value: str, field: str) -> bool:
    v = value.strip().lower()
    if v in TRUE:
        return True
    if v in FALSE:
        return False
    raise InvalidInput(f"{field}: {value!r} is not true/false")


def _list(value: str) -> list[str]:
    return [part for part in value.replace(";", " ").replace(",", " ").split() if part]


#: Columns holding amounts: read exactly as written (an amount is strictly `-?digits[.dddd]`,
#: docs/api.md), where other cells lose their surrounding spaces.
MONEY_COLUMNS = frozenset({"initial_balance", "overdraft", "grey", "colour", "duplex_discount"})


def _read_csv(path: str, known: set[str], required: set[str]):
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise InvalidInput(f"{path}: cannot read: {e.strerror}") from None
    with f:
        reader = csv.DictReader(f)
        header = set(reader.fieldnames or ())
        unknown = header - known
        if unknown:
            raise InvalidInput(f"{path}: unknown column(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
        if not required <= header:
            raise InvalidInput(f"{path}: missing column(s) {', '.join(sorted(required - header))}")
        try:
            for row in reader:
                yield reader.line_num, {k: (v or "") if k in MONEY_COLUMNS else (v or "").strip()
                                        for k, v in row.items() if k is not None}
        except (csv.Error, UnicodeDecodeError) as e:
            raise InvalidInput(f"{path} line {reader.line_num}: {e}") from None


USER_COLUMNS = {"username", "full_name", "email", "department", "office", "card_numbers",
                "initial_balance", "restricted", "overdraft", "groups", "password", "pin"}


async def _import_rows(reactor, args, columns, required, import_row) -> int:
    cfg = configlib.load(args.config)
    store = await _open_started_store(reactor, cfg)
    created = updated = failed = 0
    try:
        for line, row in _read_csv(args.csv, columns, required):
            try:
                if await import_row(store, row):
                    created += 1
                else:
                    updated += 1
            except PcnetError as e:
                failed += 1
                sys.stderr.write(f"pcnet: {args.csv} line {line}: {e.message}\n")
    finally:
        await store.stop()
    print(f"pcnet: {created} created, {updated} updated, {failed} rejected")
    return 1 if failed else 0


async def _import_user(store, row) -> bool:
    username = row.get("username", "")
    if not username:
        raise InvalidInput("username: required")
    fields = {k: row[k] for k in ("full_name", "email", "department", "office") if row.get(k)}
    if row.get("card_numbers"):
        fields["card_numbers"] = tuple(_list(row["card_numbers"]))
    if row.get("password"):
        fields["password_hash"] = hash_secret(row["password"])
    if row.get("pin"):
        fields["pin_hash"] = hash_secret(row["pin"])
    restricted = _bool(row["restricted"], "restricted") if row.get("restricted") else None
    overdraft = parse_money(row["overdraft"], "overdraft") if row.get("overdraft") else None
    try:
        user = await store.get_user_by_name(username)
        created = False
    except NotFound:
        user = None
    if user is None:
        balance = parse_money(row["initial_balance"], "initial_balance") if row.get("initial_balance") else None
        user = await store.create_user(
            username, initial_balance=balance,
            restricted=True if restricted is None else restricted, overdraft=overdraft, **fields)
        created = True
    else:
        if fields:
            user = await store.update_user(user.id, **fields)
        account_changes = {}
        if restricted is not None:
            account_changes["restricted"] = restricted
        if overdraft is not None:
            account_changes["overdraft"] = overdraft
        if account_changes:
            await store.update_account(user.personal_account_id, **account_changes)
    for group_name in _list(row.get("groups", "")):
        try:
            group = await store.get_group_by_name(group_name)
        except NotFound:
            group = await store.create_group(group_name)
        await store.add_group_member(group.id, user.id)
    return created


async def import_users(reactor, args) -> int:
    return await _import_rows(reactor, args, USER_COLUMNS, {"username"}, _import_user)


PRINTER_COLUMNS = {"name", "server", "queue", "location", "grey", "colour", "duplex_discount",
                   "hold_mode", "failure_mode", "pdl", "deny_document_patterns"}


def _enum(enum_type, value: str, field: str):
    try:
        return enum_type(value)
    except ValueError:
        raise InvalidInput(f"{field}: {value!r} is not one of {', '.join(e.value for e in enum_type)}") from None


async def _import_printer(store, row) -> bool:
    name = row.get("name", "")
    if not name:
        raise InvalidInput("name: required")
    fields = {k: row[k] for k in ("server", "queue", "location", "pdl") if row.get(k)}
    prices = {k: parse_money(row[k], k) for k in ("grey", "colour", "duplex_discount") if row.get(k)}
    if row.get("hold_mode"):
        fields["hold_mode"] = _enum(HoldMode, row["hold_mode"], "hold_mode")
    if row.get("failure_mode"):
        fields["failure_mode"] = _enum(FailureMode, row["failure_mode"], "failure_mode")
    patterns = tuple(p for p in row.get("deny_document_patterns", "").split(";") if p)
    for p in patterns:
        if not valid_pattern(p):
            raise InvalidInput(f"deny_document_patterns: {p!r} is not a valid regular expression")
    try:
        printer = await store.get_printer_by_name(name)
    except NotFound:
        printer = None
    model = printer.cost_model if printer else CostModel()
    if prices:
        model = replace(model, **prices)
        fields["cost_model"] = model
    if patterns:
        fields["filters"] = replace(printer.filters if printer else Filters(), deny_document_patterns=patterns)
    if printer is None:
        await store.create_printer(name, **fields)
        return True
    if fields:
        await store.update_printer(printer.id, **fields)
    return False


async def import_printers(reactor, args) -> int:
    return await _import_rows(reactor, args, PRINTER_COLUMNS, {"name"}, _import_printer)


async def create_token(reactor, args) -> int:
    cfg = configlib.load(args.config)
    store = await _open_started_store(reactor, cfg)
    try:
        user_id = None
        if args.user:
            user = await store.get_user_by_name(args.user)
            if not user.admin or user.disabled:
                # The API refuses such tokens (403); better to say so now than hand one out.
                raise InvalidInput(f"--user {args.user}: not an active administrator")
            user_id = user.id
        token = new_token()
        await store.create_api_token(args.name, hash_token(token), user_id=user_id)
    finally:
        await store.stop()
    print(token)
    return 0



async def nodes_command(reactor, args) -> int:
    """`pcnet nodes list|invite|approve|reject|delete`: what the admin API's node routes do,
    from the server's shell. A node rejected or deleted here is refused at its next hello (the
    running server closes a live connection only when told through the API)."""
    from pcnet.app.provider_ops import StoreNodeRegistry
    from pcnet.net.registry import NodeStatus

    verb = args.nodes_command
    if verb == "invite":
        _check_invitation(args)
    cfg = configlib.load(args.config)
    store = await _open_started_store(reactor, cfg)
    registry = StoreNodeRegistry(store, reactor)
    try:
        if verb == "list":
            _print_nodes(await store.list_nodes(), await store.list_node_invitations(),
                         _utc(reactor.seconds()))
        elif verb == "invite":
            code, invitation = await registry.invite(
                args.name, args.role, hours=args.expires or DEFAULT_CODE_HOURS, approve=args.approve)
            print(code)
            then = "approved at once" if invitation.approve else "then waits for approval (pcnet nodes approve)"
            sys.stderr.write(
                f"pcnet: one-time enrolment code for {args.role} {args.name!r}, valid until "
                f"{invitation.expires_at.isoformat(timespec='minutes')} (shown only now). Put it in the "
                f"node's configuration ([server] enrolment_code); its first hello enrols it, {then}.\n")
        elif verb in ("approve", "reject"):
            status = NodeStatus.APPROVED if verb == "approve" else NodeStatus.REJECTED
            node = await registry.set_status(args.name, status)
            print(f"pcnet: {node.role} {node.name!r} is {node.status}")
        elif verb == "delete":
            await registry.delete(args.name)
            print(f"pcnet: node {args.name!r} deleted; invite it again to let it enrol")
    finally:
        await store.stop()
    return 0


def _check_invitation(args) -> None:
    if not re.fullmatch(NODE_NAME_PATTERN, args.name):
        raise InvalidInput(f"node name {args.name!r}: {NODE_NAME_HINT}")
    if args.expires is not None and not 1 <= args.expires <= MAX_CODE_HOURS:
        raise InvalidInput(f"--expires: {args.expires} is out of range (1 to {MAX_CODE_HOURS} hours)")


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _when(moment) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M") if moment else "-"


def _print_nodes(nodes, invitations, now) -> None:
    rows = [("NAME", "ROLE", "STATUS", "ADDRESS", "ENROLLED", "APPROVED")]
    rows += [(n.name, n.role, n.status, n.address or "-", _when(n.created_at), _when(n.approved_at))
             for n in nodes]
    _table(rows)
    if invitations:
        print()
        rows = [("INVITED", "ROLE", "ON ENROLMENT", "EXPIRES")]
        rows += [(i.name, i.role, "approved" if i.approve else "pending",
                  _when(i.expires_at) + (" (expired)" if i.expires_at <= now else ""))
                 for i in invitations]
        _table(rows)


def _table(rows) -> None:
    widths = [max(len(str(r[c])) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
