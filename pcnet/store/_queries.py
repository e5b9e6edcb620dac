"""The store's queries, written once for both engines as coroutine functions of a transaction.

Each function takes a `txn` (an `SqliteTxn` or a `PgTxn`) and runs its statements with
`await txn.execute(sql, params)` and `txn.fetchone()` / `txn.fetchall()`. SQL is written in
psycopg2's paramstyle (`%s`); the SQLite engine rewrites it to `?`. Where the dialects differ the
txn says how: `txn.for_update` (row locks exist on PostgreSQL only; SQLite has one writer) and
`txn.ledger_function` (on PostgreSQL the ledger steps run in the PL/pgSQL function
`pcnet_apply_entry`, see `apply_entry`).

Arguments arrive already converted to column values: money in minor units, times in
microseconds since the epoch (`now` is the store's clock reading), enums as their strings.
"""

from __future__ import annotations

from pcnet.domain.enrolment import KnownNode, Verdict, judge_hello
from pcnet.domain.ledger import entry_allowed
from pcnet.errors import Conflict, InsufficientFunds, InvalidInput, NotFound
from pcnet.money import format_money, from_minor
from pcnet.store._convert import (
    ACCOUNT_COLUMNS,
    AUDIT_COLUMNS,
    GROUP_COLUMNS,
    INVITATION_COLUMNS,
    JOB_COLUMNS,
    JOB_INSERT_COLUMNS,
    NODE_COLUMNS,
    OFFLINE_POLICY_COLUMNS,
    PRINTER_COLUMNS,
    QUARANTINE_COLUMNS,
    QUOTA_COLUMNS,
    TOKEN_COLUMNS,
    TRANSACTION_COLUMNS,
    USER_COLUMNS,
    USER_FROM,
    account_from_row,
    audit_from_row,
    audit_params,
    from_micros,
    group_from_row,
    invitation_from_row,
    job_from_row,
    node_from_row,
    offline_policy_from_row,
    printer_from_row,
    printer_name_from_row,
    quarantined_from_row,
    quota_from_row,
    token_from_row,
    transaction_from_row,
    user_from_row,
)
from pcnet.store._records import NODE_ROLES, NODE_STATUSES, QUARANTINE_STATES, Change

TERMINAL_JOB_STATUSES = ("printed", "denied", "cancelled", "expired")


def _placeholders(n: int) -> str:
    return ", ".join(["%s"] * n)


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _like(term: str) -> str:
    return f"%{_escape_like(term.lower())}%"


def insufficient_funds(account_id: int, balance: int, overdraft: int, amount: int) -> InsufficientFunds:
    """The one message for a refused charge, whichever engine refused it (minor units in)."""
    return InsufficientFunds(
        f"account {account_id} has a balance of {format_money(from_minor(balance))} and may go"
        f" down to {format_money(-from_minor(overdraft))}; a charge of"
        f" {format_money(-from_minor(amount))} would take it below that")


# --- users -------------------------------------------------------------------------------------

async def _cards_of(txn, user_ids) -> dict[int, list[str]]:
    cards: dict[int, list[str]] = {uid: [] for uid in user_ids}
    if not user_ids:
        return cards
    ids = list(user_ids)
    await txn.execute(
        f"SELECT user_id, card_number FROM cards WHERE user_id IN ({_placeholders(len(ids))})"
        " ORDER BY user_id, position", ids)
    for user_id, card in txn.fetchall():
        cards[user_id].append(card)
    return cards


async def _one(txn, sql, params, missing: str):
    """The single row a query must find, or NotFound with the message `missing`."""
    await txn.execute(sql, params)
    row = txn.fetchone()
    if row is None:
        raise NotFound(missing)
    return row


async def _users_from_rows(txn, rows):
    cards = await _cards_of(txn, [r[0] for r in rows])
    return [user_from_row(r, cards[r[0]]) for r in rows]


async def get_user(txn, user_id):
    await txn.execute(f"SELECT {USER_COLUMNS} FROM {USER_FROM} WHERE u.id = %s", (user_id,))
    row = txn.fetchone()
    if row is None:
        raise NotFound(f"user {user_id} does not exist")
    return (await _users_from_rows(txn, [row]))[0]


async def get_user_by_name(txn, username):
    await txn.execute(f"SELECT {USER_COLUMNS} FROM {USER_FROM} WHERE u.username = %s", (username,))
    row = txn.fetchone()
    if row is None:
        raise NotFound(f"user {username!r} does not exist")
    return (await _users_from_rows(txn, [row]))[0]


async def find_user_by_card(txn, card_number):
    await txn.execute(
        f"SELECT {USER_COLUMNS} FROM {USER_FROM} JOIN cards c ON c.user_id = u.id"
        " WHERE c.card_number = %s", (card_number,))
    row = txn.fetchone()
    return None if row is None else (await _users_from_rows(txn, [row]))[0]


async def list_users(txn, offset, limit, search):
    where, params = "", []
    if search:
        where = (" WHERE lower(u.username) LIKE %s ESCAPE '\\' OR lower(u.full_name) LIKE %s"
                 " ESCAPE '\\' OR lower(u.email) LIKE %s ESCAPE '\\'")
        params = [_like(search)] * 3
    await txn.execute(f"SELECT count(*) FROM users u{where}", params)
    total = txn.fetchone()[0]
    await txn.execute(
        f"SELECT {USER_COLUMNS} FROM {USER_FROM}{where} ORDER BY u.username LIMIT %s OFFSET %s",
        params + [limit, offset])
    return await _users_from_rows(txn, txn.fetchall()), total


async def _check_cards_free(txn, cards, user_id) -> None:
    if not cards:
        return
    await txn.execute(
        f"SELECT card_number FROM cards WHERE card_number IN ({_placeholders(len(cards))})"
        " AND user_id <> %s", list(cards) + [user_id or 0])
    if txn.fetchone() is not None:
        # The card number is a credential: the message does not repeat it or say whose it is.
        raise Conflict("a card number given is already assigned to another user")


async def _set_cards(txn, user_id, cards) -> None:
    await txn.execute("SELECT card_number, position FROM cards WHERE user_id = %s", (user_id,))
    existing = dict(txn.fetchall())
    for card in existing:
        if card not in cards:
            await txn.execute("DELETE FROM cards WHERE card_number = %s", (card,))
    for position, card in enumerate(cards):
        if card not in existing:
            await txn.execute("INSERT INTO cards (card_number, user_id, position) VALUES (%s, %s, %s)",
                              (card, user_id, position))
        elif existing[card] != position:
            await txn.execute("UPDATE cards SET position = %s WHERE card_number = %s", (position, card))


def _clean_cards(cards) -> list[str]:
    seen: list[str] = []
    for card in cards or ():
        card = str(card).strip()
        if not card:
            raise InvalidInput("card_numbers: an empty card number")
        if card not in seen:
            seen.append(card)
    return seen


async def create_user(txn, now, username, fields, initial, initial_uuid, restricted, overdraft):
    if not username:
        raise InvalidInput("username: required")
    cards = _clean_cards(fields.get("card_numbers"))
    await txn.execute("SELECT 1 FROM users WHERE username = %s", (username,))
    if txn.fetchone() is not None:
        raise Conflict(f"username {username!r} is taken")
    await _check_cards_free(txn, cards, None)
    await txn.execute(
        "INSERT INTO users (username, full_name, email, department, office, password_hash,"
        " pin_hash, admin, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (username, fields.get("full_name", ""), fields.get("email", ""),
         fields.get("department", ""), fields.get("office", ""), fields.get("password_hash"),
         fields.get("pin_hash"), bool(fields.get("admin", False)), now))
    user_id = txn.fetchone()[0]
    await _set_cards(txn, user_id, cards)
    await txn.execute(
        "INSERT INTO accounts (kind, name, restricted, overdraft, owner_user_id, created_at)"
        " VALUES ('personal', %s, %s, %s, %s, %s) RETURNING id",
        (username, bool(restricted), overdraft, user_id, now))
    account_id = txn.fetchone()[0]
    if initial is not None:
        await apply_entry(txn, (initial_uuid, account_id, initial, "initial", "",
                                "initial balance", "app", now), False)
    return await get_user(txn, user_id)


_USER_FIELDS = ("full_name", "email", "department", "office", "password_hash", "pin_hash",
                "disabled", "admin")


async def update_user(txn, user_id, fields):
    unknown = set(fields) - set(_USER_FIELDS) - {"card_numbers"}
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))} of a user")
    await txn.execute("SELECT 1 FROM users WHERE id = %s" + txn.for_update, (user_id,))
    if txn.fetchone() is None:
        raise NotFound(f"user {user_id} does not exist")
    columns = [f for f in _USER_FIELDS if f in fields]
    if columns:
        values = [bool(fields[c]) if c in ("disabled", "admin") else fields[c] for c in columns]
        await txn.execute(
            f"UPDATE users SET {', '.join(c + ' = %s' for c in columns)} WHERE id = %s",
            values + [user_id])
    if "card_numbers" in fields:
        cards = _clean_cards(fields["card_numbers"])
        await _check_cards_free(txn, cards, user_id)
        await _set_cards(txn, user_id, cards)
    return await get_user(txn, user_id)


# --- groups ------------------------------------------------------------------------------------

async def create_group(txn, now, name, description):
    if not name:
        raise InvalidInput("name: required")
    await txn.execute("SELECT 1 FROM groups WHERE name = %s", (name,))
    if txn.fetchone() is not None:
        raise Conflict(f"group {name!r} exists")
    await txn.execute(
        f"INSERT INTO groups (name, description, created_at) VALUES (%s, %s, %s)"
        f" RETURNING {GROUP_COLUMNS}", (name, description, now))
    return group_from_row(txn.fetchone())


async def get_group(txn, group_id):
    row = await _one(txn, f"SELECT {GROUP_COLUMNS} FROM groups WHERE id = %s", (group_id,),
                     f"group {group_id} does not exist")
    return group_from_row(row)


async def get_group_by_name(txn, name):
    row = await _one(txn, f"SELECT {GROUP_COLUMNS} FROM groups WHERE name = %s", (name,),
                     f"group {name!r} does not exist")
    return group_from_row(row)


async def list_groups(txn):
    await txn.execute(f"SELECT {GROUP_COLUMNS} FROM groups ORDER BY name")
    return [group_from_row(r) for r in txn.fetchall()]


async def _require(txn, table, what, row_id):
    await txn.execute(f"SELECT 1 FROM {table} WHERE id = %s", (row_id,))
    if txn.fetchone() is None:
        raise NotFound(f"{what} {row_id} does not exist")


async def add_group_member(txn, group_id, user_id):
    await _require(txn, "groups", "group", group_id)
    await _require(txn, "users", "user", user_id)
    await txn.execute("INSERT INTO group_members (group_id, user_id) VALUES (%s, %s)"
                      " ON CONFLICT DO NOTHING", (group_id, user_id))


async def remove_group_member(txn, group_id, user_id):
    await txn.execute("DELETE FROM group_members WHERE group_id = %s AND user_id = %s",
                      (group_id, user_id))


async def group_members(txn, group_id):
    await _require(txn, "groups", "group", group_id)
    await txn.execute(
        f"SELECT {USER_COLUMNS} FROM {USER_FROM} JOIN group_members m ON m.user_id = u.id"
        " WHERE m.group_id = %s ORDER BY u.username", (group_id,))
    return await _users_from_rows(txn, txn.fetchall())


async def user_groups(txn, user_id):
    await _require(txn, "users", "user", user_id)
    await txn.execute(
        "SELECT g.id, g.name, g.description FROM groups g JOIN group_members m ON m.group_id = g.id"
        " WHERE m.user_id = %s ORDER BY g.name", (user_id,))
    return [group_from_row(r) for r in txn.fetchall()]


# --- accounts ----------------------------------------------------------------------------------

async def _check_parent(txn, account_id, parent_id) -> None:
    """A parent must be an existing shared account, and not the account or one below it."""
    seen = {account_id}
    current = parent_id
    while current is not None:
        if current in seen:
            raise InvalidInput(f"parent_id: account {parent_id} is this account or one below it")
        seen.add(current)
        await txn.execute("SELECT kind, parent_id FROM accounts WHERE id = %s", (current,))
        row = txn.fetchone()
        if row is None:
            raise NotFound(f"account {current} does not exist")
        if current == parent_id and row[0] != "shared":
            raise InvalidInput(f"parent_id: account {parent_id} is not a shared account")
        current = row[1]


async def create_shared_account(txn, now, name, fields, initial, initial_uuid):
    if not name:
        raise InvalidInput("name: required")
    await txn.execute("SELECT 1 FROM accounts WHERE kind = 'shared' AND name = %s", (name,))
    if txn.fetchone() is not None:
        raise Conflict(f"shared account {name!r} exists")
    if fields.get("parent_id") is not None:
        await _check_parent(txn, None, fields["parent_id"])
    await txn.execute(
        "INSERT INTO accounts (kind, name, restricted, overdraft, parent_id, pin_hash, comment,"
        " created_at) VALUES ('shared', %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (name, bool(fields["restricted"]), fields["overdraft"], fields.get("parent_id"),
         fields.get("pin_hash"), fields.get("comment", ""), now))
    account_id = txn.fetchone()[0]
    if initial is not None:
        await apply_entry(txn, (initial_uuid, account_id, initial, "initial", "",
                                "initial balance", "app", now), False)
    return await get_account(txn, account_id)


async def get_account(txn, account_id):
    row = await _one(txn, f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = %s", (account_id,),
                     f"account {account_id} does not exist")
    return account_from_row(row)


async def get_account_by_name(txn, name):
    await txn.execute(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE kind = 'shared' AND name = %s",
                      (name,))
    row = txn.fetchone()
    if row is None:
        raise NotFound(f"shared account {name!r} does not exist")
    return account_from_row(row)


async def list_accounts(txn, kind, offset, limit):
    where, params = "", []
    if kind is not None:
        where, params = " WHERE kind = %s", [kind]
    await txn.execute(f"SELECT count(*) FROM accounts{where}", params)
    total = txn.fetchone()[0]
    await txn.execute(f"SELECT {ACCOUNT_COLUMNS} FROM accounts{where} ORDER BY name, id"
                      " LIMIT %s OFFSET %s", params + [limit, offset])
    return [account_from_row(r) for r in txn.fetchall()], total


_ACCOUNT_FIELDS = ("name", "restricted", "overdraft", "pin_hash", "parent_id", "disabled", "comment")


async def update_account(txn, account_id, fields):
    unknown = set(fields) - set(_ACCOUNT_FIELDS)
    if "balance" in unknown:
        raise InvalidInput("balance: change it with a ledger entry or set_balance")
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))} of an account")
    await txn.execute("SELECT kind FROM accounts WHERE id = %s" + txn.for_update, (account_id,))
    row = txn.fetchone()
    if row is None:
        raise NotFound(f"account {account_id} does not exist")
    kind = row[0]
    if "name" in fields:
        if not fields["name"]:
            raise InvalidInput("name: required")
        if kind == "shared":
            await txn.execute("SELECT 1 FROM accounts WHERE kind = 'shared' AND name = %s AND id <> %s",
                              (fields["name"], account_id))
            if txn.fetchone() is not None:
                raise Conflict(f"shared account {fields['name']!r} exists")
    if fields.get("parent_id") is not None:
        if kind != "shared":
            raise InvalidInput("parent_id: only shared accounts have a parent")
        await _check_parent(txn, account_id, fields["parent_id"])
    columns = [f for f in _ACCOUNT_FIELDS if f in fields]
    if columns:
        values = [bool(fields[c]) if c in ("restricted", "disabled") else fields[c] for c in columns]
        await txn.execute(
            f"UPDATE accounts SET {', '.join(c + ' = %s' for c in columns)} WHERE id = %s",
            values + [account_id])
    return await get_account(txn, account_id)


def _access_target(user_id, group_id):
    if (user_id is None) == (group_id is None):
        raise InvalidInput("give exactly one of user_id and group_id")
    if user_id is not None:
        return "account_user_access", "user_id", user_id, "users", "user"
    return "account_group_access", "group_id", group_id, "groups", "group"


async def grant_account_access(txn, account_id, user_id, group_id):
    table, column, target, target_table, what = _access_target(user_id, group_id)
    await txn.execute("SELECT kind FROM accounts WHERE id = %s", (account_id,))
    row = txn.fetchone()
    if row is None:
        raise NotFound(f"account {account_id} does not exist")
    if row[0] != "shared":
        raise InvalidInput(f"account {account_id} is a personal account; only shared accounts are granted")
    await _require(txn, target_table, what, target)
    await txn.execute(f"INSERT INTO {table} (account_id, {column}) VALUES (%s, %s)"
                      " ON CONFLICT DO NOTHING", (account_id, target))


async def revoke_account_access(txn, account_id, user_id, group_id):
    table, column, target, _, _ = _access_target(user_id, group_id)
    await txn.execute(f"DELETE FROM {table} WHERE account_id = %s AND {column} = %s",
                      (account_id, target))


async def account_access(txn, account_id):
    await _require(txn, "accounts", "account", account_id)
    await txn.execute("SELECT user_id FROM account_user_access WHERE account_id = %s ORDER BY user_id",
                      (account_id,))
    users = [r[0] for r in txn.fetchall()]
    await txn.execute("SELECT group_id FROM account_group_access WHERE account_id = %s ORDER BY group_id",
                      (account_id,))
    return {"users": users, "groups": [r[0] for r in txn.fetchall()]}


async def user_can_use_account(txn, user_id, account_id):
    await txn.execute(
        "SELECT 1 FROM accounts a WHERE a.id = %s AND (a.owner_user_id = %s OR (a.kind = 'shared' AND ("
        " EXISTS (SELECT 1 FROM account_user_access x WHERE x.account_id = a.id AND x.user_id = %s)"
        " OR EXISTS (SELECT 1 FROM account_group_access g JOIN group_members m ON m.group_id = g.group_id"
        "            WHERE g.account_id = a.id AND m.user_id = %s))))",
        (account_id, user_id, user_id, user_id))
    return txn.fetchone() is not None


# --- the ledger --------------------------------------------------------------------------------

async def _transaction_by_uuid(txn, uuid):
    await txn.execute(f"SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE uuid = %s", (uuid,))
    row = txn.fetchone()
    return None if row is None else transaction_from_row(row)


async def find_transaction(txn, uuid):
    return await _transaction_by_uuid(txn, uuid)


async def get_transaction_by_uuid(txn, uuid):
    t = await _transaction_by_uuid(txn, uuid)
    if t is None:
        raise NotFound(f"transaction {uuid} does not exist")
    return t


async def apply_entry(txn, entry, guard):
    """Apply one ledger entry; returns (Transaction, existed).

    `entry` is (uuid, account_id, amount, kind, reference, comment, origin, created_at) in
    column values. A uuid that exists already returns the stored row and changes nothing; with
    `guard`, a charge that would take a restricted account below -overdraft raises
    InsufficientFunds. The PostgreSQL engine runs the same steps in `pcnet_apply_entry`
    (migrations/postgres/0001_initial.sql), where they take one round trip and the row lock;
    here one writer makes the read-then-write safe.
    """
    if txn.ledger_function:
        await txn.execute("SELECT * FROM pcnet_apply_entry(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                          tuple(entry) + (bool(guard),))
        row = txn.fetchone()
        return transaction_from_row(row[:10]), row[10]
    uuid, account_id, amount, kind, reference, comment, origin, created_at = entry
    stored = await _transaction_by_uuid(txn, uuid)
    if stored is not None:
        return stored, True
    await txn.execute("SELECT balance, restricted, overdraft FROM accounts WHERE id = %s",
                      (account_id,))
    row = txn.fetchone()
    if row is None:
        raise NotFound(f"account {account_id} does not exist")
    balance, restricted, overdraft = row
    if guard and not entry_allowed(from_minor(balance), from_minor(amount),
                                   restricted=bool(restricted), overdraft=from_minor(overdraft)):
        raise insufficient_funds(account_id, balance, overdraft, amount)
    after = balance + amount
    await txn.execute(
        "INSERT INTO transactions (uuid, account_id, amount, balance_after, kind, reference,"
        " comment, origin, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (uuid, account_id, amount, after, kind, reference, comment, origin, created_at))
    txn_id = txn.fetchone()[0]
    await txn.execute("UPDATE accounts SET balance = %s WHERE id = %s", (after, account_id))
    return transaction_from_row(
        (txn_id, uuid, account_id, amount, after, kind, reference, comment, origin, created_at)), False


async def apply_ledger_entry(txn, entry, guard):
    return (await apply_entry(txn, entry, guard))[0]


async def set_balance(txn, account_id, target, uuid, comment, origin, now):
    stored = await _transaction_by_uuid(txn, uuid)
    if stored is not None:
        return stored
    # The delta is computed under the row lock, so a concurrent charge cannot slip between
    # reading the balance and writing the SET row.
    await txn.execute("SELECT balance FROM accounts WHERE id = %s" + txn.for_update, (account_id,))
    row = txn.fetchone()
    if row is None:
        raise NotFound(f"account {account_id} does not exist")
    entry = (uuid, account_id, target - row[0], "set", "", comment, origin, now)
    return (await apply_entry(txn, entry, False))[0]


async def list_transactions(txn, account_id, offset, limit):
    await _require(txn, "accounts", "account", account_id)
    await txn.execute("SELECT count(*) FROM transactions WHERE account_id = %s", (account_id,))
    total = txn.fetchone()[0]
    await txn.execute(
        f"SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE account_id = %s"
        # Insertion order, the order balance_after runs in (created_at may be a site's clock).
        " ORDER BY id DESC LIMIT %s OFFSET %s", (account_id, limit, offset))
    return [transaction_from_row(r) for r in txn.fetchall()], total


# --- printers ----------------------------------------------------------------------------------

async def _check_printer_free(txn, printer_id, name, server, queue) -> None:
    if name is not None:
        await txn.execute("SELECT 1 FROM printers WHERE name = %s AND id <> %s", (name, printer_id or 0))
        if txn.fetchone() is not None:
            raise Conflict(f"printer {name!r} exists")
    if queue:
        await txn.execute("SELECT name FROM printers WHERE server = %s AND queue = %s AND id <> %s",
                          (server, queue, printer_id or 0))
        row = txn.fetchone()
        if row is not None:
            raise Conflict(f"queue {queue!r} on {server!r} is already printer {row[0]!r}")


async def create_printer(txn, now, name, columns):
    if not name:
        raise InvalidInput("name: required")
    await _check_printer_free(txn, None, name, columns["server"], columns["queue"])
    await txn.execute(
        "INSERT INTO printers (name, server, queue, location, cost_model, filters, hold_mode,"
        " failure_mode, pdl, disabled, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        f" RETURNING {PRINTER_COLUMNS}",
        (name, columns["server"], columns["queue"], columns["location"], columns["cost_model"],
         columns["filters"], columns["hold_mode"], columns["failure_mode"], columns["pdl"],
         bool(columns.get("disabled", False)), now))
    printer = printer_from_row(txn.fetchone())
    await txn.execute("INSERT INTO printer_names (printer_id, name, valid_from) VALUES (%s, %s, %s)",
                      (printer.id, name, now))
    return printer


async def get_printer(txn, printer_id):
    row = await _one(txn, f"SELECT {PRINTER_COLUMNS} FROM printers WHERE id = %s", (printer_id,),
                     f"printer {printer_id} does not exist")
    return printer_from_row(row)


async def get_printer_by_name(txn, name):
    row = await _one(txn, f"SELECT {PRINTER_COLUMNS} FROM printers WHERE name = %s", (name,),
                     f"printer {name!r} does not exist")
    return printer_from_row(row)


async def find_printer(txn, server, queue):
    await txn.execute(f"SELECT {PRINTER_COLUMNS} FROM printers WHERE server = %s AND queue = %s"
                      " ORDER BY id", (server, queue))
    row = txn.fetchone()
    return None if row is None else printer_from_row(row)


async def list_printers(txn):
    await txn.execute(f"SELECT {PRINTER_COLUMNS} FROM printers ORDER BY name")
    return [printer_from_row(r) for r in txn.fetchall()]


PRINTER_FIELDS = ("name", "server", "queue", "location", "cost_model", "filters", "hold_mode",
                  "failure_mode", "pdl", "disabled")


async def update_printer(txn, now, printer_id, columns):
    unknown = set(columns) - set(PRINTER_FIELDS)
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))} of a printer")
    await txn.execute(f"SELECT {PRINTER_COLUMNS} FROM printers WHERE id = %s" + txn.for_update,
                      (printer_id,))
    row = txn.fetchone()
    if row is None:
        raise NotFound(f"printer {printer_id} does not exist")
    current = printer_from_row(row)
    if "name" in columns and not columns["name"]:
        raise InvalidInput("name: required")
    renamed = "name" in columns and columns["name"] != current.name
    server = columns.get("server", current.server)
    queue = columns.get("queue", current.queue)
    await _check_printer_free(txn, printer_id, columns["name"] if renamed else None, server,
                              queue if ("server" in columns or "queue" in columns) else "")
    names = [c for c in PRINTER_FIELDS if c in columns]
    if names:
        values = [bool(columns[c]) if c == "disabled" else columns[c] for c in names]
        await txn.execute(f"UPDATE printers SET {', '.join(c + ' = %s' for c in names)} WHERE id = %s",
                          values + [printer_id])
    if renamed:
        # The id stays; the old name is kept with the time it stopped being used.
        await txn.execute("UPDATE printer_names SET valid_until = %s"
                          " WHERE printer_id = %s AND valid_until IS NULL", (now, printer_id))
        await txn.execute("INSERT INTO printer_names (printer_id, name, valid_from) VALUES (%s, %s, %s)",
                          (printer_id, columns["name"], now))
    return await get_printer(txn, printer_id)


async def printer_names(txn, printer_id):
    await _require(txn, "printers", "printer", printer_id)
    await txn.execute("SELECT name, valid_from, valid_until FROM printer_names WHERE printer_id = %s"
                      " ORDER BY id", (printer_id,))
    return [printer_name_from_row(r) for r in txn.fetchall()]


# --- jobs --------------------------------------------------------------------------------------

async def _job_and_charge(txn, uuid, lock=False):
    await txn.execute(f"SELECT {JOB_COLUMNS}, charge_txn_id FROM jobs WHERE uuid = %s"
                      + (txn.for_update if lock else ""), (uuid,))
    row = txn.fetchone()
    if row is None:
        return None, None, None
    charge = None
    if row[-1] is not None:
        await txn.execute(f"SELECT {TRANSACTION_COLUMNS} FROM transactions WHERE id = %s", (row[-1],))
        charge = transaction_from_row(txn.fetchone())
    return job_from_row(row[:-1]), charge, row[-1]


async def stored_job(txn, uuid):
    """(JobRecord, Transaction | None) as stored."""
    job, charge, _ = await _job_and_charge(txn, uuid)
    if job is None:
        raise NotFound(f"job {uuid} does not exist")
    return job, charge


async def record_job(txn, job, charge, guard):
    """The SQLite engine's record_job (PostgreSQL: `pcnet_record_job`, same steps).

    `job` holds the values of JOB_INSERT_COLUMNS, `charge` those of a ledger entry or None.
    """
    stored, stored_charge, _ = await _job_and_charge(txn, job[0])
    if stored is not None:
        return stored, stored_charge
    t = None
    if charge is not None:
        t, _ = await apply_entry(txn, charge, guard)
    await txn.execute(
        f"INSERT INTO jobs ({JOB_INSERT_COLUMNS}, charge_txn_id)"
        f" VALUES ({_placeholders(19)}) RETURNING id", tuple(job) + (t.id if t else None,))
    return job_from_row((txn.fetchone()[0],) + tuple(job)), t


#: The column that records who moved a job to a status (a job back on hold was not released).
_ACTOR_COLUMN = {"released": "released_by", "held": "released_by", "cancelled": "cancelled_by",
                 "expired": "cancelled_by"}


async def update_job_status(txn, now, uuid, status, reason, charge, guard, by=""):
    job, current_charge, charge_id = await _job_and_charge(txn, uuid, lock=True)
    if job is None:
        raise NotFound(f"job {uuid} does not exist")
    if job.status.value == status:
        # A repeat of this move (a replay, a retried request): nothing changes.
        return job, current_charge
    if job.status.value in TERMINAL_JOB_STATUSES:
        raise Conflict(f"job {uuid} is already {job.status.value}; it cannot become {status}")
    t = None
    if charge is not None:
        t, _ = await apply_entry(txn, charge, guard)
    actor = _ACTOR_COLUMN.get(status)
    await txn.execute("UPDATE jobs SET status = %s, reason = %s, charge_txn_id = %s, updated_at = %s"
                      + (f", {actor} = %s" if actor else "") + " WHERE id = %s",
                      (status, reason, t.id if t else charge_id, now)
                      + ((by if status != "held" else "",) if actor else ()) + (job.id,))
    job, current_charge, _ = await _job_and_charge(txn, uuid)
    return job, t if t is not None else current_charge


async def mark_job_printed(txn, now, uuid, printer_id, cost, reason, charge, guard):
    """A held or released job printed (possibly on another printer: Find-Me): status printed,
    the printer it printed on, the cost it was charged and its charge, in one transaction.
    Idempotent: a job already printed is returned as it is."""
    job, current_charge, charge_id = await _job_and_charge(txn, uuid, lock=True)
    if job is None:
        raise NotFound(f"job {uuid} does not exist")
    if job.status.value == "printed":
        return job, current_charge
    if job.status.value in TERMINAL_JOB_STATUSES:
        raise Conflict(f"job {uuid} is already {job.status.value}; it cannot become printed")
    await _require(txn, "printers", "printer", printer_id)
    t = None
    if charge is not None:
        t, _ = await apply_entry(txn, charge, guard)
    await txn.execute(
        "UPDATE jobs SET status = 'printed', printer_id = %s, cost = %s, reason = %s,"
        " charge_txn_id = %s, updated_at = %s WHERE id = %s",
        (printer_id, cost, reason, t.id if t else charge_id, now, job.id))
    job, current_charge, _ = await _job_and_charge(txn, uuid)
    return job, t if t is not None else current_charge


async def get_job(txn, uuid):
    row = await _one(txn, f"SELECT {JOB_COLUMNS} FROM jobs WHERE uuid = %s", (uuid,),
                     f"job {uuid} does not exist")
    return job_from_row(row)


async def get_job_by_id(txn, job_id):
    row = await _one(txn, f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s", (job_id,),
                     f"job {job_id} does not exist")
    return job_from_row(row)


def _where(filters: dict, columns, time_column: str) -> tuple[list[str], list]:
    """Conditions (and their parameters) for the `filters` that are set: each of `columns`
    equal to its value, and `since` (inclusive) / `until` (exclusive) on `time_column`."""
    conditions, params = [], []
    for column in columns:
        if filters.get(column) is not None:
            conditions.append(f"{column} = %s")
            params.append(filters[column])
    if filters.get("since") is not None:
        conditions.append(f"{time_column} >= %s")
        params.append(filters["since"])
    if filters.get("until") is not None:
        conditions.append(f"{time_column} < %s")
        params.append(filters["until"])
    return conditions, params


async def list_jobs(txn, offset, limit, filters):
    conditions, params = _where(filters, ("user_id", "printer_id", "account_id", "status"),
                                "created_at")
    if filters.get("problem") is not None:
        # The same expression as the jobs_problem partial index, so that index serves it.
        conditions.append("problem <> ''" if filters["problem"] else "problem = ''")
    return await _filtered_page(txn, JOB_COLUMNS, "jobs", conditions, params,
                                "created_at DESC, id DESC", offset, limit, job_from_row)


async def _filtered_page(txn, columns, table, conditions, params, order, offset, limit, make):
    """(records, total): one page of the rows of `table` that meet every condition."""
    where = (" WHERE " + " AND ".join(conditions)) if conditions else ""
    await txn.execute(f"SELECT count(*) FROM {table}{where}", params)
    total = txn.fetchone()[0]
    await txn.execute(f"SELECT {columns} FROM {table}{where} ORDER BY {order} LIMIT %s OFFSET %s",
                      params + [limit, offset])
    return [make(r) for r in txn.fetchall()], total


async def find_duplicate_job(txn, user_id, printer_id, document_name, pages, since):
    await txn.execute(
        "SELECT 1 FROM jobs WHERE user_id = %s AND created_at >= %s AND printer_id = %s"
        " AND document_name = %s AND pages = %s AND status IN ('printed', 'held') LIMIT 1",
        (user_id, since, printer_id, document_name, pages))
    return txn.fetchone() is not None


# --- quotas ------------------------------------------------------------------------------------

async def create_quota(txn, group_id, amount, period, cap, next_due_at):
    await _require(txn, "groups", "group", group_id)
    await txn.execute(
        "INSERT INTO quotas (group_id, amount, period, cap, next_due_at) VALUES (%s, %s, %s, %s, %s)"
        f" RETURNING {QUOTA_COLUMNS}", (group_id, amount, period, cap, next_due_at))
    return quota_from_row(txn.fetchone())


async def get_quota(txn, quota_id):
    row = await _one(txn, f"SELECT {QUOTA_COLUMNS} FROM quotas WHERE id = %s", (quota_id,),
                     f"quota {quota_id} does not exist")
    return quota_from_row(row)


async def list_quotas(txn):
    await txn.execute(f"SELECT {QUOTA_COLUMNS} FROM quotas ORDER BY id")
    return [quota_from_row(r) for r in txn.fetchall()]


QUOTA_FIELDS = ("amount", "period", "cap", "next_due_at")


async def update_quota(txn, quota_id, columns):
    unknown = set(columns) - set(QUOTA_FIELDS)
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))} of a quota")
    await get_quota(txn, quota_id)
    names = [c for c in QUOTA_FIELDS if c in columns]
    if names:
        await txn.execute(f"UPDATE quotas SET {', '.join(c + ' = %s' for c in names)} WHERE id = %s",
                          [columns[c] for c in names] + [quota_id])
    return await get_quota(txn, quota_id)


async def delete_quota(txn, quota_id):
    await txn.execute("DELETE FROM quotas WHERE id = %s", (quota_id,))
    if txn.rowcount == 0:
        raise NotFound(f"quota {quota_id} does not exist")


async def due_quotas(txn, now):
    await txn.execute(f"SELECT {QUOTA_COLUMNS} FROM quotas WHERE next_due_at <= %s"
                      " ORDER BY next_due_at, id", (now,))
    return [quota_from_row(r) for r in txn.fetchall()]


async def mark_quota_applied(txn, quota_id, applied_at, next_due_at):
    await txn.execute("UPDATE quotas SET last_applied_at = %s, next_due_at = %s WHERE id = %s",
                      (applied_at, next_due_at, quota_id))
    if txn.rowcount == 0:
        raise NotFound(f"quota {quota_id} does not exist")
    return await get_quota(txn, quota_id)


# --- API tokens --------------------------------------------------------------------------------

async def create_api_token(txn, now, name, token_hash, user_id):
    if not token_hash:
        raise InvalidInput("token_hash: required")
    if user_id is not None:
        await _require(txn, "users", "user", user_id)
    await txn.execute("SELECT 1 FROM api_tokens WHERE token_hash = %s", (token_hash,))
    if txn.fetchone() is not None:
        raise Conflict("this token exists already")
    await txn.execute(f"INSERT INTO api_tokens (name, token_hash, user_id, created_at)"
                      f" VALUES (%s, %s, %s, %s) RETURNING {TOKEN_COLUMNS}",
                      (name, token_hash, user_id, now))
    return token_from_row(txn.fetchone())


async def find_api_token(txn, now, token_hash):
    await txn.execute(f"UPDATE api_tokens SET last_used_at = %s WHERE token_hash = %s"
                      f" RETURNING {TOKEN_COLUMNS}", (now, token_hash))
    row = txn.fetchone()
    return None if row is None else token_from_row(row)


async def list_api_tokens(txn):
    await txn.execute(f"SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id")
    return [token_from_row(r) for r in txn.fetchall()]


async def revoke_api_token(txn, token_id):
    await txn.execute("DELETE FROM api_tokens WHERE id = %s", (token_id,))
    if txn.rowcount == 0:
        raise NotFound(f"API token {token_id} does not exist")


# --- nodes -------------------------------------------------------------------------------------

async def _node(txn, name, lock=False):
    await txn.execute(f"SELECT {NODE_COLUMNS} FROM nodes WHERE name = %s"
                      + (txn.for_update if lock else ""), (name,))
    row = txn.fetchone()
    return None if row is None else node_from_row(row)


async def _invitation(txn, name, lock=False):
    await txn.execute(f"SELECT {INVITATION_COLUMNS} FROM node_invitations WHERE name = %s"
                      + (txn.for_update if lock else ""), (name,))
    row = txn.fetchone()
    return None if row is None else invitation_from_row(row)


def _check_role(role):
    if role not in NODE_ROLES:
        raise InvalidInput(f"role: {role!r} is not one of {', '.join(NODE_ROLES)}")


async def node_hello(txn, now, role, name, credential_hash, address, code_hash, auto_approve):
    """A node's hello, judged by `pcnet.domain.enrolment.judge_hello` and carried out in this
    transaction: the node's row and its invitation are read locked, so two hellos with one
    code cannot both enrol. Returns the Verdict. A refused hello changes nothing."""
    if not name:
        raise InvalidInput("node name: required")
    _check_role(role)
    for _ in range(2):
        node = await _node(txn, name, lock=True)
        invitation = await _invitation(txn, name, lock=True) if code_hash is not None else None
        known = None if node is None else KnownNode(node.role, node.credential_hash, node.status)
        verdict = judge_hello(role, credential_hash, code_hash, node=known, invitation=invitation,
                              auto_approve=auto_approve, now=from_micros(now))
        approved_at = now if verdict.status == "approved" else None
        if verdict.pin and node is None:
            await txn.execute(
                "INSERT INTO nodes (name, role, credential_hash, status, address, created_at,"
                " approved_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (name, role, credential_hash, verdict.status, address or "", now, approved_at))
            if txn.rowcount != 1:
                continue  # another hello recorded the name meanwhile: judge again against it
        elif verdict.pin:
            await txn.execute(
                "UPDATE nodes SET role = %s, credential_hash = %s, status = %s, address = %s,"
                " approved_at = %s WHERE name = %s",
                (role, credential_hash, verdict.status, address or node.address, approved_at, name))
        elif verdict.approve:
            await txn.execute("UPDATE nodes SET status = 'approved', approved_at = %s WHERE name = %s",
                              (now, name))
        if verdict.spend_invitation:
            await txn.execute("DELETE FROM node_invitations WHERE name = %s", (name,))
        if (node is not None and not verdict.pin and verdict.status != "rejected" and address
                and address != node.address):
            await txn.execute("UPDATE nodes SET address = %s WHERE name = %s", (address, name))
        return verdict
    return Verdict("rejected", "refused: another hello enrolled this name at the same moment")


async def delete_node(txn, name):
    await txn.execute("DELETE FROM nodes WHERE name = %s", (name,))
    if txn.rowcount == 0:
        raise NotFound(f"node {name!r} is not known")


async def create_node_invitation(txn, now, name, role, code_hash, expires_at, approve):
    """Invite a node (replacing the name's earlier invitation). A name recorded for another
    role must be deleted first; the same role is fine (a new machine, a new credential)."""
    if not name:
        raise InvalidInput("name: required")
    _check_role(role)
    node = await _node(txn, name, lock=True)
    if node is not None and node.role != role:
        raise Conflict(f"node {name!r} is a {node.role}: delete it before inviting a {role} by that name")
    await txn.execute(
        "INSERT INTO node_invitations (name, role, code_hash, approve, created_at, expires_at)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET role = excluded.role,"
        " code_hash = excluded.code_hash, approve = excluded.approve,"
        " created_at = excluded.created_at, expires_at = excluded.expires_at",
        (name, role, code_hash, bool(approve), now, expires_at))
    return await _invitation(txn, name)


async def list_node_invitations(txn):
    await txn.execute(f"SELECT {INVITATION_COLUMNS} FROM node_invitations ORDER BY name")
    return [invitation_from_row(r) for r in txn.fetchall()]


async def delete_node_invitation(txn, name):
    await txn.execute("DELETE FROM node_invitations WHERE name = %s", (name,))
    if txn.rowcount == 0:
        raise NotFound(f"no invitation for node {name!r}")


async def get_node(txn, name):
    node = await _node(txn, name)
    if node is None:
        raise NotFound(f"node {name!r} is not known")
    return node


async def list_nodes(txn):
    await txn.execute(f"SELECT {NODE_COLUMNS} FROM nodes ORDER BY name")
    return [node_from_row(r) for r in txn.fetchall()]


async def set_node_status(txn, now, name, status):
    if status not in NODE_STATUSES:
        raise InvalidInput(f"status: {status!r} is not one of {', '.join(NODE_STATUSES)}")
    await txn.execute(
        "UPDATE nodes SET status = %s, approved_at = CASE WHEN %s = 'approved' THEN %s ELSE approved_at END"
        " WHERE name = %s", (status, status, now, name))
    if txn.rowcount == 0:
        raise NotFound(f"node {name!r} is not known")
    return await get_node(txn, name)


# --- journal entries quarantined by providers ----------------------------------------------------

def _quarantine_state(state):
    if state not in QUARANTINE_STATES:
        raise InvalidInput(f"state: {state!r} is not one of {', '.join(QUARANTINE_STATES)}",
                           field="state")
    return state


async def report_quarantined(txn, now, node, key, kind, job_uuid, error_code, error_message,
                             record_json, state, quarantined_at):
    """Insert or refresh a provider's report of one quarantined entry (one row per node and
    entry key)."""
    await txn.execute(
        "INSERT INTO journal_quarantine (node, entry_key, kind, job_uuid, error_code,"
        " error_message, record, state, quarantined_at, reported_at, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (node, entry_key) DO UPDATE SET kind = excluded.kind,"
        " job_uuid = excluded.job_uuid, error_code = excluded.error_code,"
        " error_message = excluded.error_message, record = excluded.record,"
        " state = excluded.state, quarantined_at = excluded.quarantined_at,"
        " reported_at = excluded.reported_at, updated_at = excluded.updated_at RETURNING id",
        (node, key, kind, job_uuid, error_code, error_message, record_json,
         _quarantine_state(state), quarantined_at, now, now))
    return await get_quarantined(txn, txn.fetchone()[0])


async def get_quarantined(txn, entry_id):
    row = await _one(txn, f"SELECT {QUARANTINE_COLUMNS} FROM journal_quarantine WHERE id = %s",
                     (entry_id,), f"no quarantined journal entry with id {entry_id}")
    return quarantined_from_row(row)


async def list_quarantined(txn, offset, limit, node, state):
    conditions, params = [], []
    if node is not None:
        conditions.append("node = %s")
        params.append(node)
    if state is not None:
        conditions.append("state = %s")
        params.append(_quarantine_state(state))
    return await _filtered_page(txn, QUARANTINE_COLUMNS, "journal_quarantine", conditions, params,
                                "id DESC", offset, limit, quarantined_from_row)


async def set_quarantined_state(txn, now, entry_id, state):
    await txn.execute("UPDATE journal_quarantine SET state = %s, updated_at = %s WHERE id = %s",
                      (_quarantine_state(state), now, entry_id))
    if txn.rowcount == 0:
        raise NotFound(f"no quarantined journal entry with id {entry_id}")
    return await get_quarantined(txn, entry_id)


# --- the change feed ---------------------------------------------------------------------------

def _int_key(text):
    return int(text)


def _pair_key(text):
    a, b = text.split(",")
    return int(a), int(b)


# table -> how a tombstone's row_key becomes the Change key
_TOMBSTONE_KEYS = {
    "cards": str,
    "group_members": _pair_key,
    "account_user_access": _pair_key,
    "account_group_access": _pair_key,
    "quotas": _int_key,
}


async def changes_since(txn, seq, limit):
    """Rows of the replicated tables changed (inserted, updated, deleted) after `seq`, oldest
    first, at most `limit`. Each table is read up to `limit` rows and the union cut to `limit`,
    which is exactly the first `limit` changes overall."""
    await txn.lock_change_feed()
    changes: list[Change] = []

    await txn.execute(f"SELECT {USER_COLUMNS}, u.change_seq FROM {USER_FROM}"
                      " WHERE u.change_seq > %s ORDER BY u.change_seq LIMIT %s", (seq, limit))
    rows = txn.fetchall()
    for user, row in zip(await _users_from_rows(txn, [r[:-1] for r in rows]), rows):
        changes.append(Change(row[-1], "users", user.id, user))

    await txn.execute("SELECT card_number, user_id, change_seq FROM cards WHERE change_seq > %s"
                      " ORDER BY change_seq LIMIT %s", (seq, limit))
    for card, user_id, s in txn.fetchall():
        changes.append(Change(s, "cards", card, {"card_number": card, "user_id": user_id}))

    simple = (
        ("groups", GROUP_COLUMNS, group_from_row),
        ("accounts", ACCOUNT_COLUMNS, account_from_row),
        ("printers", PRINTER_COLUMNS, printer_from_row),
        ("quotas", QUOTA_COLUMNS, quota_from_row),
    )
    for table, columns, make in simple:
        await txn.execute(f"SELECT {columns}, change_seq FROM {table} WHERE change_seq > %s"
                          " ORDER BY change_seq LIMIT %s", (seq, limit))
        for row in txn.fetchall():
            changes.append(Change(row[-1], table, row[0], make(row[:-1])))

    links = (
        ("group_members", "group_id", "user_id"),
        ("account_user_access", "account_id", "user_id"),
        ("account_group_access", "account_id", "group_id"),
    )
    for table, a, b in links:
        await txn.execute(f"SELECT {a}, {b}, change_seq FROM {table} WHERE change_seq > %s"
                          " ORDER BY change_seq LIMIT %s", (seq, limit))
        for x, y, s in txn.fetchall():
            changes.append(Change(s, table, (x, y), {a: x, b: y}))

    await txn.execute(f"SELECT {OFFLINE_POLICY_COLUMNS}, change_seq FROM offline_policy"
                      " WHERE change_seq > %s", (seq,))
    for row in txn.fetchall():
        changes.append(Change(row[-1], "offline_policy", 1, offline_policy_from_row(row[:-1])))

    await txn.execute(f"SELECT {JOB_COLUMNS}, change_seq FROM jobs WHERE change_seq > %s"
                      " ORDER BY change_seq LIMIT %s", (seq, limit))
    for row in txn.fetchall():
        job = job_from_row(row[:-1])
        changes.append(Change(row[-1], "jobs", job.uuid, job))

    await txn.execute("SELECT seq, table_name, row_key FROM change_tombstones WHERE seq > %s"
                      " ORDER BY seq LIMIT %s", (seq, limit))
    for s, table, key in txn.fetchall():
        changes.append(Change(s, table, _TOMBSTONE_KEYS.get(table, str)(key), None))

    changes.sort(key=lambda c: c.seq)
    return changes[:limit]


changes_since.reads_change_feed = True


async def last_change_seq(txn):
    """The highest sequence number handed out so far (a snapshot's starting point)."""
    if txn.engine == "postgres":
        await txn.lock_change_feed()
        await txn.execute("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM pcnet_change_seq")
    else:
        await txn.execute("SELECT seq FROM change_counter")
    return txn.fetchone()[0]


last_change_seq.reads_change_feed = True


async def applied_migrations(txn):
    """The migration versions recorded in schema_migrations."""
    await txn.execute("SELECT version FROM schema_migrations")
    return sorted(row[0] for row in txn.fetchall())


# --- the Site Server's offline policy ------------------------------------------------------------

async def get_offline_policy(txn):
    row = await _one(txn, f"SELECT {OFFLINE_POLICY_COLUMNS} FROM offline_policy WHERE id = 1", (),
                     "the offline policy is missing (run the migrations)")
    return offline_policy_from_row(row)


async def set_offline_policy(txn, now, params):
    selection, account_id, credit, unknown, unknown_user_id, password_auth = params
    if account_id is not None:
        await txn.execute("SELECT kind FROM accounts WHERE id = %s", (account_id,))
        row = txn.fetchone()
        if row is None:
            raise NotFound(f"account {account_id} does not exist")
        if row[0] != "shared":
            raise InvalidInput(f"offline_account: account {account_id} is not a shared account",
                               field="offline_account")
    if unknown_user_id is not None:
        await _require(txn, "users", "user", unknown_user_id)
    await txn.execute(
        "UPDATE offline_policy SET account_selection = %s, offline_account_id = %s,"
        " restricted_credit = %s, unknown_users = %s, unknown_user_id = %s,"
        " password_auth_offline = %s, updated_at = %s WHERE id = 1",
        (selection, account_id, credit, unknown, unknown_user_id, bool(password_auth), now))
    return await get_offline_policy(txn)


# --- the audit log ------------------------------------------------------------------------------

async def insert_audit(txn, now, params):
    await txn.execute(
        f"INSERT INTO audit_log ({AUDIT_COLUMNS.replace('id, ', '', 1)})"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", (now,) + tuple(params))


async def audited(txn, fn, make_entry, now, *args):
    """Run the write `fn(txn, *args)` and record its audit row in the same transaction:
    `make_entry` is an AuditEntry, or a function of `fn`'s result returning one (or None)."""
    result = await fn(txn, *args)
    entry = make_entry(result) if callable(make_entry) else make_entry
    if entry is not None:
        await insert_audit(txn, now, audit_params(entry))
    return result


async def list_audit(txn, offset, limit, filters):
    conditions, params = _where(filters, ("actor", "object_kind", "object_id", "action"), "at")
    if filters.get("actor_kind") is not None:
        # The kind is the part of the actor before ':' ("token:3" -> token; "scheduler").
        conditions.append("(actor = %s OR actor LIKE %s ESCAPE '\\')")
        params += [filters["actor_kind"], _escape_like(filters["actor_kind"]) + ":%"]
    return await _filtered_page(txn, AUDIT_COLUMNS, "audit_log", conditions, params,
                                "id DESC", offset, limit, audit_from_row)
