"""The interfaces between pcnet's parts, in one place.

Implementations and fakes are checked against these with `zope.interface.verify.verifyObject`
in the tests. Methods are declared without `self`.
"""

from twisted.plugin import IPlugin
from zope.interface import Attribute, Interface


class IStore(Interface):
    """pcnet's system of record: one interface, one engine per database (SQLite, PostgreSQL).

    Every method returns a Deferred (methods may be implemented as coroutines wrapped with
    `Deferred.fromCoroutine`). Records are the dataclasses of `pcnet.domain.model`. Methods raise
    `pcnet.errors.NotFound` for a missing id, `Conflict` for a duplicate unique name, and
    `InsufficientFunds` when a guarded ledger entry would take a restricted account below its
    overdraft limit. Money is Decimal here and integer minor units in the tables.

    Administrative write methods take `audit`: an `AuditEntry` (pcnet.domain.model), or a
    function of the method's result returning one (or None), written to the audit log in the
    same database transaction as the write, so a change is never made without its audit row
    nor recorded without having been made. The service layer (pcnet.app.services) is the only
    caller of the write methods; nothing updates or deletes the audit log.
    """

    engine = Attribute("'sqlite' or 'postgres'")

    def start():
        """Connect and apply pending numbered migrations; fires with the list of migration
        versions applied (empty when the schema was current). Fails with StoreUnavailable
        (naming the address or file) when the database cannot be reached, and when it was
        written by a newer pcnet."""

    def stop():
        """Close connections; pending writes are finished first."""

    # --- users and groups -------------------------------------------------------------
    def create_user(username, *, full_name="", email="", department="", office="",
                    card_numbers=(), password_hash=None, pin_hash=None, admin=False,
                    initial_balance=None, restricted=True, overdraft=None, audit=None):
        """Create a user and its personal account (with an INITIAL transaction when
        initial_balance is given). Returns the User. Conflict if the username exists or a card
        number is taken."""

    def get_user(user_id):
        """User by id (NotFound)."""

    def get_user_by_name(username):
        """User by username (NotFound)."""

    def find_user_by_card(card_number):
        """User holding this card number, or None."""

    def list_users(offset=0, limit=100, search=None):
        """(list[User], total) ordered by username; search matches username/full name/email."""

    def update_user(user_id, *, audit=None, **fields):
        """Change any of: full_name, email, department, office, card_numbers, password_hash,
        pin_hash, disabled, admin. Returns the User."""

    def create_group(name, description="", *, audit=None):
        """Returns the Group; Conflict on a duplicate name."""

    def get_group(group_id):
        """Group by id."""

    def get_group_by_name(name):
        """Group by name (NotFound)."""

    def list_groups():
        """list[Group] ordered by name."""

    def add_group_member(group_id, user_id, *, audit=None):
        """Idempotent."""

    def remove_group_member(group_id, user_id, *, audit=None):
        """Idempotent."""

    def group_members(group_id):
        """list[User] of the group."""

    def user_groups(user_id):
        """list[Group] the user belongs to."""

    # --- accounts and ledger ---------------------------------------------------------
    def create_shared_account(name, *, parent_id=None, pin_hash=None, restricted=False,
                              overdraft=None, comment="", initial_balance=None, audit=None):
        """Returns the Account; Conflict on a duplicate name."""

    def get_account(account_id):
        """Account by id, with its current balance."""

    def get_account_by_name(name):
        """Shared account by name (NotFound)."""

    def list_accounts(kind=None, offset=0, limit=100):
        """(list[Account], total) ordered by name."""

    def update_account(account_id, *, audit=None, **fields):
        """Change any of: name, restricted, overdraft, pin_hash, parent_id, disabled, comment."""

    def grant_account_access(account_id, *, user_id=None, group_id=None, audit=None):
        """Let a user or a group's members charge a shared account. Idempotent."""

    def revoke_account_access(account_id, *, user_id=None, group_id=None, audit=None):
        """Idempotent."""

    def account_access(account_id):
        """{"users": [user ids], "groups": [group ids]}."""

    def user_can_use_account(user_id, account_id):
        """True if the account is the user's personal one, or a shared account granted to the
        user directly or through a group."""

    def apply_ledger_entry(entry, *, guard=False, audit=None):
        """Apply a LedgerEntry in one database transaction: insert the transaction row with
        balance_after and move the account balance. A uuid that already exists is a no-op that
        returns the existing Transaction. With guard=True a charge that would take a restricted
        account below -overdraft raises InsufficientFunds and changes nothing."""

    def set_balance(account_id, balance, *, uuid, comment="", origin="app", audit=None):
        """Set the balance to an exact figure, recorded as a SET transaction of the delta
        (computed inside the database transaction)."""

    def find_transaction(uuid):
        """The ledger Transaction with this uuid, or None."""

    def list_transactions(account_id, offset=0, limit=100):
        """(list[Transaction], total), newest first."""

    # --- printers ----------------------------------------------------------------------
    def create_printer(name, *, server="", queue="", location="", cost_model=None,
                       filters=None, hold_mode=None, failure_mode=None, pdl="", disabled=False,
                       audit=None):
        """Returns the Printer; Conflict on a duplicate name."""

    def get_printer(printer_id):
        """Printer by id."""

    def get_printer_by_name(name):
        """Printer by name (NotFound)."""

    def find_printer(server, queue):
        """Printer by (print server, queue name), or None."""

    def list_printers():
        """list[Printer] ordered by name."""

    def update_printer(printer_id, *, audit=None, **fields):
        """Change any of: name (the id and history stay), server, queue, location, cost_model,
        filters, hold_mode, failure_mode, pdl, disabled. Returns the Printer."""

    # --- jobs ----------------------------------------------------------------------------
    def record_job(job, charge=None, *, guard=True):
        """Write a JobRecord to the job log and, if `charge` (a LedgerEntry) is given, apply it
        in the same database transaction. Idempotent on job.uuid: a repeat returns the stored
        (JobRecord, Transaction|None) and charges nothing. InsufficientFunds (guarded) writes
        nothing. Returns (JobRecord, Transaction | None)."""

    def update_job_status(job_uuid, status, *, reason="", charge=None, guard=True, by="",
                          audit=None):
        """Move a job (e.g. held -> printed, with its charge; held -> cancelled/expired) in one
        transaction. Returns (JobRecord, Transaction | None). `by` (an actor's label) is kept
        as the job's `released_by` when it is released (cleared when it goes back on hold) and
        as its `cancelled_by` when it is cancelled or expires. Moving a job to the status it
        has is a no-op returning the stored job and charge (a replay); moving a printed,
        denied, cancelled or expired job anywhere else is a Conflict. A refused guarded charge
        (InsufficientFunds) changes nothing."""

    def mark_job_printed(job_uuid, *, printer_id, cost, reason="", charge=None, guard=False):
        """A held or released job printed on `printer_id` (for a Find-Me job, the printer it
        was released at) at `cost`: status printed, printer, cost and `charge` in one
        transaction. Idempotent on a job already printed; Conflict for a cancelled, expired
        or denied one. Returns (JobRecord, Transaction | None)."""

    def get_job(job_uuid):
        """JobRecord by uuid (NotFound), with `released_by`, `cancelled_by` and the printer's
        current name (`printer_name`)."""

    def get_job_by_id(job_id):
        """JobRecord by its integer id (NotFound), as `get_job`."""

    def list_jobs(offset=0, limit=100, *, user_id=None, printer_id=None, account_id=None,
                  status=None, since=None, until=None, problem=None):
        """(list[JobRecord], total) newest first, filtered; `since` inclusive, `until`
        exclusive; `problem` True: only jobs with a problem, False: only jobs without."""

    def find_duplicate_job(user_id, printer_id, document_name, pages, since):
        """True if a printed or held job with the same user, printer, document name and page
        count exists at or after `since`."""

    # --- quotas ---------------------------------------------------------------------------
    def create_quota(group_id, amount, period, *, cap=None, next_due_at, audit=None):
        """Returns the Quota."""

    def list_quotas():
        """list[Quota]."""

    def update_quota(quota_id, *, audit=None, **fields):
        """Change any of: amount, period, cap, next_due_at."""

    def delete_quota(quota_id, *, audit=None):
        """Remove a quota schedule (its past allocations stay in the ledger)."""

    def due_quotas(now):
        """list[Quota] whose next_due_at <= now."""

    def mark_quota_applied(quota_id, applied_at, next_due_at):
        """Record a run of the schedule."""

    # --- API tokens -----------------------------------------------------------------------
    def create_api_token(name, token_hash, *, user_id=None, audit=None):
        """Store a token's hash (never the token). Returns the ApiToken."""

    def find_api_token(token_hash):
        """ApiToken for this hash, or None (and records last use)."""

    def list_api_tokens():
        """list[ApiToken]."""

    def revoke_api_token(token_id, *, audit=None):
        """Delete a token."""

    # --- printer history -------------------------------------------------------------------
    def printer_names(printer_id):
        """list[pcnet.store.PrinterName]: every name the printer has had, oldest first, with
        when it was used (`until` None for the current name)."""

    # --- pcnet/1 nodes (providers, site servers, device gateways) -------------------------
    def node_hello(role, name, credential_hash, address="", *, code_hash=None, auto_approve=False):
        """Judge a node's hello by `pcnet.domain.enrolment.judge_hello` and carry the verdict
        out in one transaction; fires with the `Verdict` (its `status` is "approved",
        "pending" or "rejected"). `credential_hash` is the digest of the credential presented
        (str, or bytes stored as hex), `code_hash` that of the enrolment code if the hello
        carried one; `auto_approve`: the hello comes from an auto-approve network. A valid code
        records (or re-records) the node and is spent; an unknown name without one is rejected
        and recorded nowhere; a refused hello changes nothing."""

    def create_node_invitation(name, role, code_hash, expires_at, *, approve, audit=None):
        """Store an invitation to enrol `name` as `role`: the digest of its one-time code (never
        the code), until when it is valid, and whether enrolling approves the node at once.
        Replaces the name's earlier invitation; Conflict if the name is a node of another role.
        Returns the `pcnet.domain.enrolment.NodeInvitation`."""

    def list_node_invitations():
        """list[NodeInvitation] ordered by name, the expired ones included."""

    def delete_node_invitation(name, *, audit=None):
        """Withdraw a name's invitation (NotFound)."""

    def get_node(name):
        """pcnet.store.Node by name (NotFound)."""

    def list_nodes():
        """list[pcnet.store.Node] ordered by name."""

    def set_node_status(name, status, *, audit=None):
        """Approve, reject or suspend (pending) a node; approving stamps approved_at. Returns
        the Node (NotFound)."""

    def delete_node(name, *, audit=None):
        """Forget a node, freeing its name for a new enrolment (NotFound)."""
    # --- journal entries quarantined by Print Providers ------------------------------------
    def report_quarantined(node, key, *, kind, job_uuid="", error_code, error_message, record,
                           state="quarantined", quarantined_at=None):
        """Record (or refresh: one row per `(node, key)`) a provider's report of a journal
        entry it set aside; `record` is the entry's fields (a JSON-able dict), `state` one of
        pcnet.store.QUARANTINE_STATES. Returns the pcnet.store.QuarantinedEntry."""

    def get_quarantined(entry_id):
        """pcnet.store.QuarantinedEntry by id (NotFound)."""

    def list_quarantined(offset=0, limit=100, *, node=None, state=None):
        """(list[QuarantinedEntry], total), newest report first."""

    def set_quarantined_state(entry_id, state, *, audit=None):
        """Move a quarantined entry to another state (e.g. "retrying"). Returns it (NotFound)."""

    # --- the Site Server's offline policy (one record, replicated) -------------------------
    def get_offline_policy():
        """The `SiteOfflinePolicy` (pcnet.domain.model)."""

    def set_offline_policy(policy, *, audit=None):
        """Replace the offline policy with `policy` (a SiteOfflinePolicy); returns it as stored.
        NotFound for an unknown account or user id; InvalidInput when `offline_account_id`
        is not a shared account."""

    # --- the audit log (append-only: written by the `audit` of the write methods) -----------
    def list_audit(offset=0, limit=100, *, actor=None, actor_kind=None, action=None,
                   object_kind=None, object_id=None, since=None, until=None):
        """(list[AuditEntry], total), newest first, filtered: `actor` the exact actor
        ("token:3"), `actor_kind` its kind ("token", "cli", ...), `action` ("user.update"),
        `object_kind` and `object_id`; `since` inclusive, `until` exclusive."""

    # --- change feed (for Site Server replicas) -------------------------------------------
    def changes_since(seq, limit=1000):
        """list[pcnet.store.Change], oldest first, at most `limit`: every row of a replicated
        table (users, cards, groups, group_members, accounts with balances,
        account_user_access, account_group_access, printers, quotas, the offline policy, and
        held jobs) inserted,
        updated or deleted after sequence number `seq`. A row changed several times appears
        once, at its latest state; a deleted row comes with `record` None. Pass the last
        `seq` you applied to continue; `changes_since(0)` is a full snapshot. Never skips a
        change that commits late (see docs/storage.md)."""

    def last_change_seq():
        """The highest change sequence number handed out so far."""

    # --- watching the store (health, metrics, other processes' writes) --------------------
    def schema_status():
        """pcnet.store.SchemaStatus: the newest migration applied, the newest this pcnet
        knows, and whether every one is applied (a read: it also says the database answers)."""

    def pool_stats():
        """Synchronously: {"size", "in_use", "waiting"}: connections of the pool, those in use,
        and operations waiting for one (SQLite: its writer connection and its queue)."""

    def change_listener(clock, *, interval):
        """An `IChangeListener` of the rows *other* connections (processes) commit.
        PostgreSQL: LISTEN/NOTIFY; SQLite: PRAGMA data_version every `interval` seconds."""


class IChangeListener(Interface):
    """Hears the writes other processes commit to the store's database (`IStore.
    change_listener`; pcnet.store._watch has both engines'); the Application Server's
    `ChangeWatcher` turns them into change events. Fake: `tests.fakes.FakeChangeListener`."""

    how = Attribute("How it hears: 'listen' (PostgreSQL NOTIFY), 'poll' (SQLite), for the health report.")
    connected = Attribute("True while it can hear other writers (the health report's `changes`).")

    def start(deliver):
        """Begin: call `deliver(changes)` with a list of `pcnet.store._watch.StoreChange` for
        the rows other connections committed, or with None when what changed is unknown (it was
        deaf for a while) and everything cached must be forgotten. A Deferred firing once it
        listens (or gave up a first time; it keeps trying, logged)."""

    def stop():
        """Stop hearing; nothing is delivered afterwards."""


# --- pcnet/1 line protocol (pcnet.net) --------------------------------------------------------


class INodeRegistry(Interface):
    """Decides whether a node (Print Provider, Site Server, device gateway) may speak pcnet/1.

    Asked once per `hello`. Implementations: `pcnet.net.registry.MemoryNodeRegistry` (tests,
    config-driven auto-approval) and the store-backed one. See docs/protocol.md, "hello".
    """

    def check(role, node, credential, peer, enrolment_code=None):
        """Return a Deferred firing with a `pcnet.net.registry.NodeStatus`.

        `role` is "provider", "site" or "device"; `node` the node's name; `credential` the
        secret it presented and `enrolment_code` the one-time code of its hello, if any (never
        log or store either in clear); `peer` the connection's `IAddress` (an
        `IPv4Address`/`IPv6Address` for TCP). APPROVED lets the node in; PENDING means "known,
        waiting for an administrator"; REJECTED turns it away (also for a wrong credential or
        code, and for an unknown name without a valid code, which must leave no record). The
        rules are `pcnet.domain.enrolment.judge_hello`. May fail; the node then gets an
        `internal` error and may retry.
        """


class ILineSession(Interface):
    """One end's view of a pcnet/1 connection; what operation handlers receive as `session`."""

    role = Attribute(
        "The peer's role: 'provider', 'site' or 'device' on the server side once the peer's"
        " hello was approved, 'server' on the client side, None before that."
    )
    node = Attribute("The peer's node name (the server's name on the client side), or None.")
    peer = Attribute("The peer's IAddress.")
    authenticated = Attribute("True once the hello exchange succeeded.")
    is_connected = Attribute("True until the connection is closed (or closing).")
    in_flight = Attribute("How many of this end's requests await the peer's reply (a list of "
                          "servers closes a replaced session only once this is 0).")

    def request(op, **fields):
        """Send a request to the peer; a Deferred firing with the reply's fields (a dict), or
        failing with `RemoteError` (the peer's error code and message) or `LinkDown`."""

    def close():
        """Close the connection gracefully; pending requests fail with `LinkDown`."""

    def when_closed():
        """A Deferred firing (with the reason, as text) once the connection is gone."""


class INodeSessions(Interface):
    """The live pcnet/1 sessions of the nodes connected to this server, across its listeners:
    how the services push to a node (`job.release`, `job.cancel`, `journal.retry`), close a
    node's connections, and say who is connected (the health endpoint, the web console).

    Implementation: `pcnet.app.services.nodes.NodeSessions`; fake: `tests.fakes`.
    """

    def attach(factory):
        """Follow the sessions of a `pcnet.net.line.LineServerFactory` (one per listener)."""

    def session(role, node):
        """The connected `ILineSession` of `node` in `role`, or None."""

    def connected(role=None):
        """[(role, node)] of every connected node (of `role` if given), sorted."""

    def disconnect(node, why):
        """Close every connection of `node` (any role), telling it `why`; how many there were."""


# --- the Print Provider's collaborators (pcnet.provider) ---------------------------------------


class ICupsAdmin(Interface):
    """What the Print Provider asks of CUPS: its wrapped queues, and holding jobs' fate. Every
    method returns a Deferred. Implementation: `pcnet.provider.service.CupsControl` (pycups in
    a thread); fake: `tests.fakes.FakeCups`."""

    def managed_queues():
        """list[pcnet.provider.cupsadmin.Queue] of the queues wrapped by pcnet's backend."""

    def queue(name):
        """The Queue named `name` (NotFound)."""

    def release(job_id):
        """Release a held CUPS job; Conflict if CUPS finished it, NotFound if it has forgotten it."""

    def cancel(job_id):
        """Cancel a CUPS job (NotFound if CUPS has forgotten it)."""


# --- devices and their drivers (pcnet.devices, drivers/) ---------------------------------------

class IDeviceDriverFactory(IPlugin):
    """A device driver, found with `getPlugins(IDeviceDriverFactory, drivers)`.

    A driver module in the `drivers` package (pcnet's own, or one a vendor's distribution
    installs) holds one provider of this interface per driver. The core reads `settings` to
    validate a device's configuration into a typed `pcnet.devices.DeviceSettings` (unknown keys,
    wrong types and bad values are a `ConfigError` naming the device and the key) and then calls
    `build` once per configured device. docs/drivers.md walks through writing one.
    """

    name = Attribute("The driver's name as configured (`driver = \"snmp\"`): lowercase letters,"
                     " digits and dashes, unique among the installed drivers.")
    version = Attribute("The driver's version, a string (shown to administrators).")
    description = Attribute("One line saying what devices the driver serves.")
    settings = Attribute(
        "The configuration schema: a sequence of `pcnet.devices.Setting` (name, type, default,"
        " help, secret, check). A secret setting is never logged or shown.")

    def build(device, services, reactor):
        """A new `IDevice` for one configured device, not yet started.

        `device` is the `pcnet.devices.DeviceConfig` (name, printer, site, typed `settings`);
        `services` the `IDeviceServices` bound to that device; `reactor` provides
        `IReactorTime` (and `IReactorTCP`/`IReactorUDP` where the driver opens connections):
        a driver takes time and connections from it only, so tests can give a `task.Clock`.
        Must not block or do I/O: that belongs in `IDevice.start`."""


class IDevice(Interface):
    """One device connection as a driver runs it (an SNMP printer, a card reader, an MFD)."""

    name = Attribute("The configured device's name.")

    def start():
        """Connect and begin work; a Deferred firing once the device is in service (or with
        the first error: the core retries with backoff). A driver that keeps a connection
        reconnects by itself after a drop; `start` fires for the first connection."""

    def stop():
        """Stop all work, drop connections and cancel timers; a Deferred. After it fires the
        driver calls none of its services. Calling it again is harmless."""

    def status():
        """A Deferred firing with the device's current `pcnet.devices.DeviceStatus` (what the
        driver knows now: it must not wait on the device for long). The core asks on an
        interval, so a driver that stops answering is noticed."""


class IDeviceServices(Interface):
    """The narrow services the core gives a driver, bound to one device.

    All methods return Deferreds. Failures are `pcnet.errors.PcnetError`s with stable codes:
    `authentication_failed` (a wrong password or PIN), `unknown_card`, `disabled` (a disabled
    user or account), `forbidden` (an account the user may not charge), `insufficient_funds`,
    `not_found`, `conflict` (e.g. a job no longer held), `invalid` (a bad field),
    `provider_offline` (a release the print server cannot take now). A driver never touches the
    store; records are those of `pcnet.devices` (`Identity`, `AccountChoice`, `HeldJob`, `Usage`,
    `UsageReceipt`, `DeviceStatus`, `Supply`, `Counters`, `Alert`).
    """

    device = Attribute("The device these services are bound to (a `pcnet.devices.DeviceConfig`).")

    # --- who is at the device
    def authenticate_card(card_number):
        """The `Identity` of the card's holder; `unknown_card` if no user holds it."""

    def authenticate_card_pin(card_number, pin):
        """The `Identity` of the card's holder if `pin` is theirs; `unknown_card`, or
        `authentication_failed` for a wrong PIN (a user without a PIN fails too)."""

    def authenticate_password(username, password):
        """The `Identity` of the user if the password is theirs; `authentication_failed`
        otherwise (an unknown user fails the same way, so names cannot be probed)."""

    # --- what they may spend
    def balance(user_id):
        """The user's personal account as an `AccountChoice` (balance and what is available)."""

    def accounts(user_id):
        """The accounts the user may charge at this device: a list of `AccountChoice`, the
        personal account first."""

    def quote_usage(usage):
        """What recording this `Usage` would cost under the device's cost model (a Decimal),
        without recording it; lets a driver unlock copying within what a user can afford."""

    # --- held jobs at the device's printer
    def held_jobs(user_id):
        """The user's held jobs that may be released at this device's printer (a list of
        `HeldJob`, oldest first), Find-Me jobs for it included."""

    def release_job(user_id, job_uuid):
        """Release one of the user's held jobs to this device's printer; fires with the
        `HeldJob` as released. `conflict` if it is no longer held, `insufficient_funds` if the
        user can no longer afford it."""

    def cancel_job(user_id, job_uuid):
        """Cancel one of the user's held jobs; fires with the `HeldJob` as cancelled."""

    # --- what the device did
    def record_usage(usage):
        """Record and charge a `Usage` (copies, scans, faxes) with the device's cost model; a
        `UsageReceipt`. Idempotent on `usage.uuid`: a repeat returns the first receipt and
        charges nothing."""

    def printed_pages(since, until):
        """Pages pcnet printed on this device's printer between two UTC datetimes (a copy
        session subtracts them from the device's counter delta)."""

    # --- what the device says about itself
    def report_status(status):
        """The device's `DeviceStatus` (up, warning, error, down; the error-state bits)."""

    def report_supplies(supplies):
        """The device's supplies: a list of `Supply`."""

    def report_counters(counters):
        """The device's page `Counters`."""

    def report_alerts(alerts):
        """The device's active alerts: a list of `Alert` (all of them; an alert that is
        gone is no longer in the list)."""
