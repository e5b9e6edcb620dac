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
    """A request's content is malformed or out of range; `field` names the field at fault
    (a dotted path) when one is."""

    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message, code=code)
        self.field = field

    def to_json(self) -> dict:
        out = super().to_json()
        if self.field:
            out["field"] = self.field
        return out


class NotFound(PcnetError):
    code = "not_found"
    http_status = 404


class Conflict(PcnetError):
    """The request clashes with what exists (a duplicate name, a stale state)."""

    code = "conflict"
    http_status = 409


class JobDenied(Conflict):
    """The job rules refuse what was asked (e.g. releasing a held job whose account the user may
    no longer charge); the message holds the deny reason."""

    code = "denied"


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


class AuthenticationFailed(Unauthorized):
    """A wrong password or PIN (or an unknown user name: both look the same, so names cannot
    be probed)."""

    code = "authentication_failed"


class UnknownCard(Unauthorized):
    """No user holds the card number swiped or typed at a device."""

    code = "unknown_card"


class AccountDisabled(Forbidden):
    """The user or the account to charge is disabled."""

    code = "disabled"


class DeviceUnavailable(PcnetError):
    """A device (an MFD's web services, a card reader, an SNMP agent) does not answer."""

    code = "device_unavailable"
    http_status = 503


class DriverError(PcnetError):
    """A device driver misbehaved (raised, hung, answered nonsense); the device is in error."""

    code = "driver_error"
    http_status = 502
