"""Who makes a write, and from where: the `Actor` every service method is given.

Every write names its actor explicitly, so the audit log, the job log (who released or
cancelled a held job) and the ledger's references can say who did what. Adapters build one:

- the admin API: `Actor.for_token(token, address)` (an API token, with the peer address);
- a signed-in user (`/me`, later the web console): `Actor.for_user(user, address)`;
- a `pcnet` command on the server's shell: `Actor.for_cli(argv)` (`cli:<os user>`, the host
  and the command line, a database password in it redacted);
- pcnet/1 operations: `Actor.for_node("provider", node, address)` (`site`, `device` alike);
- the quota scheduler and held-job expiry: `SCHEDULER`.

`label` is how the actor is written everywhere (`token:3`, `user:ann`, `cli:root`,
`provider:print01`, `scheduler`); `admin` says whether it may make administrative changes.
"""

from __future__ import annotations

import getpass
import shlex
import socket
from dataclasses import dataclass

from pcnet.errors import Forbidden

#: Kinds of actor and what they are.
KINDS = ("token", "user", "cli", "provider", "site", "device", "scheduler", "system")


@dataclass(frozen=True)
class Actor:
    kind: str
    name: str = ""
    id: str = ""
    address: str = ""
    detail: str = ""
    admin: bool = False
    user_id: int | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown actor kind {self.kind!r}")

    @property
    def label(self) -> str:
        if self.kind == "token":
            return f"token:{self.id}"
        if self.kind in ("scheduler", "system") and not self.name:
            return self.kind
        return f"{self.kind}:{self.name}"

    def __str__(self) -> str:
        return self.label

    # --- how adapters make one ------------------------------------------------------------

    @classmethod
    def for_token(cls, token, address: str = "") -> Actor:
        """An admin API token (`pcnet.domain.model.ApiToken`), already checked to be usable."""
        return cls("token", name=token.name, id=str(token.id), address=address, admin=True,
                   user_id=token.user_id)

    @classmethod
    def for_user(cls, user, address: str = "", *, as_admin: bool = True) -> Actor:
        """A signed-in user (`pcnet.domain.model.User`): an administrator if the user is one,
        unless `as_admin` is False (the `/me` routes act for the user only, whoever it is)."""
        return cls("user", name=user.username, id=str(user.id), address=address,
                   admin=as_admin and bool(user.admin) and not user.disabled, user_id=user.id)

    @classmethod
    def for_cli(cls, argv=None, *, os_user: str | None = None, host: str | None = None) -> Actor:
        """A `pcnet` command run on the server's shell by `os_user` (default: who runs it)."""
        if os_user is None:
            try:
                os_user = getpass.getuser()
            except (KeyError, OSError):
                os_user = "unknown"
        command = "pcnet" + ("" if not argv else " " + " ".join(_shown(a) for a in argv))
        return cls("cli", name=os_user, address=host if host is not None else socket.gethostname(),
                   detail=command[:1000], admin=True)

    @classmethod
    def for_node(cls, role: str, node: str, address: str = "") -> Actor:
        """A pcnet/1 node (a Print Provider, Site Server or device gateway) by its role."""
        return cls(role, name=node, address=address)


def _shown(arg: str) -> str:
    """A command-line argument as the audit log keeps it: a database URL without its
    password (`pcnet init --database postgresql://u:secret@db/pcnet`, `password=...`)."""
    if "://" in arg or "password" in arg.lower():
        from pcnet.store import redact_url

        arg = redact_url(arg)
    return shlex.quote(arg)


#: The quota scheduler and the held-job expiry timer.
SCHEDULER = Actor("scheduler")
#: pcnet itself, for what no person asked (tests and start-up tasks).
SYSTEM = Actor("system", admin=True)


def require_admin(actor: Actor, what: str = "this") -> None:
    """Refuse (Forbidden) an actor that may not make administrative changes."""
    if not actor.admin:
        raise Forbidden(f"{actor.label} may not do {what}: it needs an administrator")
