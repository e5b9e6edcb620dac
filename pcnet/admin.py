"""What the `pcnet` console command does: initialise a data directory, import users and
printers from CSV, create API tokens, enrol and approve nodes.

Each command is a coroutine run once on a reactor by `run`. It writes through the service
layer (`pcnet.app.services`) as `cli:<os user>` with its command line, so the same rules apply
as through the API and every change is in the audit log. Secrets made here (the first
administrator's password, API tokens) are printed once to stdout and stored only as hashes.

A command writes to the database directly: a running server learns of the change from the
database (its change watcher), not from this process.
"""

from __future__ import annotations

import csv
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

from twisted.internet import defer, task

from pcnet import config as configlib
from pcnet._files import private_directory, write_durably
from pcnet.domain.enrolment import DEFAULT_CODE_HOURS
from pcnet.domain.secrets import new_token
from pcnet.errors import ConfigError, InvalidInput, PcnetError
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


async def _open_started_store(reactor, settings):
    """The store of `settings` (an `AppSettings`), started: a command needs few connections."""
    from pcnet.store import open_store

    store = open_store(settings.database.url, reactor=reactor,
                       pool_size=min(settings.database.pool_size, 2))
    await store.start()
    return store


def _services(store, reactor, settings):
    """The service layer over `store`, with the server's own settings (`AppSettings`), so a
    command applies the same job limits and defaults as the running server."""
    from pcnet.app.services import Services, ServiceSettings

    return Services(store, reactor, settings=ServiceSettings.from_config(settings))


def _actor(args):
    """The `pcnet` command's actor: `cli:<os user>`, with its command line."""
    from pcnet.app.services import Actor

    return Actor.for_cli(getattr(args, "command_line", None))


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
    # Validates the overrides before anything is written.
    settings = configlib.app_settings(configlib.parse(text, config_path))

    hosts = args.host or default_hosts()
    tls_dir = data_dir / "tls"
    TLSFiles(tls_dir).ensure(hosts, ca_name=f"pcnet CA {socket.gethostname()}")

    store = await _open_started_store(reactor, settings)
    try:
        services, actor = _services(store, reactor, settings), _actor(args)
        password = new_token()[:20]
        user = await services.users.create(actor, args.admin, full_name="Administrator",
                                           admin=True, password=password, restricted=False)
        token, _ = await services.tokens.create(actor, f"{args.admin} (created by pcnet init)",
                                                user=user.id)
    finally:
        await store.stop()
    # 0600: the file may hold the database password.
    write_durably(config_path, text.encode("utf-8"), 0o600)
    print(f"pcnet: initialised {data_dir}")
    print(f"  configuration:  {config_path}")
    print(f"  database:       {redact_url(settings.database.url)}")
    print(f"  CA certificate: {tls_dir / 'ca.pem'} (valid for {', '.join(hosts)})")
    print(f"  administrator:  {args.admin}")
    print(f"  password:       {password}")
    print(f"  API token:      {token}")
    print("  (the password and token are shown only now: keep them)")
    if password_of(settings.database.url):
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
    settings = configlib.load_settings(args.config)
    store = await _open_started_store(reactor, settings)
    services, actor = _services(store, reactor, settings), _actor(args)
    created = updated = failed = 0
    try:
        for line, row in _read_csv(args.csv, columns, required):
            try:
                if await import_row(services, actor, row):
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


def _money(row, column):
    return parse_money(row[column], column) if row.get(column) else None


async def _import_user(services, actor, row) -> bool:
    """One users CSV row as `UserService.upsert` takes it (the service checks every value)."""
    fields = {k: row[k] for k in ("full_name", "email", "department", "office") if row.get(k)}
    if row.get("card_numbers"):
        fields["card_numbers"] = tuple(_list(row["card_numbers"]))
    for secret in ("password", "pin"):
        if row.get(secret):
            fields[secret] = row[secret]
    _, created = await services.users.upsert(
        actor, row.get("username", ""), groups=_list(row.get("groups", "")),
        restricted=_bool(row["restricted"], "restricted") if row.get("restricted") else None,
        overdraft=_money(row, "overdraft"), initial_balance=_money(row, "initial_balance"),
        **fields)
    return created


async def import_users(reactor, args) -> int:
    return await _import_rows(reactor, args, USER_COLUMNS, {"username"}, _import_user)


PRINTER_COLUMNS = {"name", "server", "queue", "location", "grey", "colour", "duplex_discount",
                   "hold_mode", "failure_mode", "pdl", "deny_document_patterns"}


async def _import_printer(services, actor, row) -> bool:
    """One printers CSV row as `PrinterService.upsert` takes it: the prices change only what
    they give of the cost model, the patterns replace the document name filters."""
    fields = {k: row[k] for k in ("server", "queue", "location", "pdl", "hold_mode",
                                  "failure_mode") if row.get(k)}
    prices = {k: _money(row, k) for k in ("grey", "colour", "duplex_discount") if row.get(k)}
    if prices:
        fields["cost_model"] = prices
    patterns = tuple(p for p in row.get("deny_document_patterns", "").split(";") if p)
    if patterns:
        fields["filters"] = {"deny_document_patterns": patterns}
    _, created = await services.printers.upsert(actor, row.get("name", ""), **fields)
    return created


async def import_printers(reactor, args) -> int:
    return await _import_rows(reactor, args, PRINTER_COLUMNS, {"name"}, _import_printer)


async def create_token(reactor, args) -> int:
    settings = configlib.load_settings(args.config)
    store = await _open_started_store(reactor, settings)
    try:
        # The API refuses the tokens of a disabled user or of one who is not an
        # administrator (403); the service refuses to make one.
        token, _ = await _services(store, reactor, settings).tokens.create(_actor(args), args.name,
                                                                      user=args.user)
    finally:
        await store.stop()
    print(token)
    return 0


async def nodes_command(reactor, args) -> int:
    """`pcnet nodes list|invite|approve|reject|delete`: what the admin API's node routes do,
    from the server's shell. A node rejected or deleted here is refused at its next hello (the
    running server closes a live connection only when told through the API)."""
    verb = args.nodes_command
    settings = configlib.load_settings(args.config)
    store = await _open_started_store(reactor, settings)
    nodes, actor = _services(store, reactor, settings).nodes, _actor(args)
    try:
        if verb == "list":
            _print_nodes(await nodes.list(), await nodes.invitations(), _utc(reactor.seconds()))
        elif verb == "invite":
            try:
                code, invitation = await nodes.invite(
                    actor, args.name, args.role,
                    hours=DEFAULT_CODE_HOURS if args.expires is None else args.expires,
                    approve=args.approve)
            except InvalidInput as e:
                # Named as the command line names them.
                flag = {"name": f"node name {args.name!r}", "expires_hours": "--expires"}.get(e.field)
                if flag is None:
                    raise
                raise InvalidInput(f"{flag}: {e.message.split(': ', 1)[-1]}") from None
            print(code)
            then = "approved at once" if invitation.approve else "then waits for approval (pcnet nodes approve)"
            sys.stderr.write(
                f"pcnet: one-time enrolment code for {args.role} {args.name!r}, valid until "
                f"{invitation.expires_at.isoformat(timespec='minutes')} (shown only now). Put it in the "
                f"node's configuration ([server] enrolment_code); its first hello enrols it, {then}.\n")
        elif verb in ("approve", "reject"):
            node = await (nodes.approve if verb == "approve" else nodes.reject)(actor, args.name)
            print(f"pcnet: {node.role} {node.name!r} is {node.status}")
        elif verb == "delete":
            await nodes.delete(actor, args.name)
            print(f"pcnet: node {args.name!r} deleted; invite it again to let it enrol")
    finally:
        await store.stop()
    return 0


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
