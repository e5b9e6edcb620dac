"""One write path: outside the store itself and the service layer (`pcnet/app/services`), no
code of pcnet calls a write method of the store. So every write is validated once, checked for
access, audited and published as a change event, whichever way it came in (the API, the `pcnet`
commands, the quota scheduler, pcnet/1, later the web console, XML-RPC, devices)."""

from __future__ import annotations

import ast
from pathlib import Path

from pcnet.interfaces import IStore

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pcnet"
#: Where the store's write methods may be called.
ALLOWED = (PACKAGE / "store", PACKAGE / "app" / "services")

#: IStore methods that only read. Every other method is a write; a new method must be put in
#: one set or the other (the test below insists), so a new write cannot slip past this check.
READS = {
    "start", "stop", "get_user", "get_user_by_name", "find_user_by_card", "list_users",
    "get_group", "get_group_by_name", "list_groups", "group_members", "user_groups",
    "get_account", "get_account_by_name", "list_accounts", "account_access",
    "user_can_use_account", "find_transaction", "list_transactions", "get_printer",
    "get_printer_by_name", "find_printer", "list_printers", "get_job", "get_job_by_id",
    "list_jobs", "find_duplicate_job", "list_quotas", "due_quotas", "list_api_tokens",
    "printer_names", "list_node_invitations", "get_node", "list_nodes", "get_quarantined",
    "list_quarantined", "get_offline_policy", "list_audit", "changes_since", "last_change_seq",
    "schema_status", "pool_stats", "change_listener",
}
WRITES = set(IStore.names()) - READS - {"engine"}


def _receiver(node: ast.AST) -> str:
    """The dotted text of a call's receiver (`self.store`, `store`, `ctx.store`)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_receiver(node.value)}.{node.attr}"
    return "?"


def store_writes(path: Path) -> list[str]:
    """Calls of a store write method in a module: `<...store>.<write>(...)`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in WRITES):
            receiver = _receiver(node.func.value)
            if receiver.split(".")[-1].lstrip("_").endswith("store"):
                shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                found.append(f"{shown}:{node.lineno}: {receiver}.{node.func.attr}")
    return found


def test_every_store_method_is_known_as_a_read_or_a_write():
    assert READS <= set(IStore.names())
    assert {"create_user", "apply_ledger_entry", "record_job", "node_hello", "find_api_token",
            "set_offline_policy", "update_job_status"} <= WRITES


def test_only_the_service_layer_and_the_store_write_to_the_store():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if any(path.is_relative_to(allowed) for allowed in ALLOWED):
            continue
        offenders += store_writes(path)
    assert offenders == [], "write through pcnet.app.services instead:\n" + "\n".join(offenders)


def test_the_check_finds_a_write_where_there_is_one(tmp_path):
    """The check itself: a direct write in a module is found, a service call or a read is not."""
    module = tmp_path / "adapter.py"
    module.write_text(
        "async def handler(self, services):\n"
        "    await self.store.update_printer(1, name='x')\n"
        "    await self._store.apply_ledger_entry(entry)\n"
        "    await services.printers.update(actor, 1, name='x')\n"
        "    await services.accounts.set_balance(actor, 1, balance)\n"
        "    await self.store.get_printer(1)\n")
    found = [line.split(": ", 1)[1] for line in store_writes(module)]
    assert found == ["self.store.update_printer", "self._store.apply_ledger_entry"]
