"""Errors that a user, an administrator or a peer can cause.

Every one carries a stable machine-readable `code` and a message fit to show an administrator.
Servers turn them into error replies (HTTP 4xx, a pcnet/1 `error` object); anything that is not
a `PcnetError` is a bug and is logged as one, but still never crashes a server.
"""


class PcnetError(Exception):
    """Base of all expected errors. `code` is stable; the message is for people."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_json(self) -> dict:
        return {"code": self.code, "message": self.message}


class ConfigError(PcnetError):
    """A configuration file, key or value is wrong. The message names the file and the key."""

    code = "config"


class InvalidInput(PcnetError):
    """A request's content is malformed or out of range."""

    code = "invalid"


class NotFound(PcnetError):
    code = "not_found"
    http_status = 404


class Conflict(PcnetError):
    """The request clashes with what exists (a duplicate name, a stale state)."""

    code = "conflict"
    http_status = 409


class Unauthorized(PcnetError):
    code = "unauthorized"
    http_status = 401


class Forbidden(PcnetError):
    code = "forbidden"
    http_status = 403


class InsufficientFunds(PcnetError):
    """A restricted account would go below its overdraft limit."""

    code = "insufficient_funds"
    http_status = 409


class StoreUnavailable(PcnetError):
    """The database cannot be reached; the message names the address."""

    code = "store_unavailable"
    http_status = 503
