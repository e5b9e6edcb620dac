"""Database addresses in messages: never with their password.

A PostgreSQL address may carry a password (`postgresql://user:PW@host/db`, `?password=PW`, or
`password=PW` in a libpq keyword string). Whatever pcnet prints or logs about a database — the
`pcnet init` summary, a start-up failure, a configuration error, a lost connection — goes
through `describe_address` (host:port/dbname only), `redact_url` (the address as configured,
the password replaced by `***`) or `scrub` (an error text with the password taken out).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def _is_url(url: str) -> bool:
    return "://" in url


def _written_password(url: str) -> str | None:
    """The password as the address is written (the user part before the last `@` of a URL),
    whether or not libpq reads it the same way."""
    if _is_url(url):
        before_query = url.split("://", 1)[1].partition("?")[0]
        userinfo = before_query.rsplit("@", 1)[0] if "@" in before_query else ""
        return unquote(userinfo.split(":", 1)[1]) if ":" in userinfo else None
    m = _KEYWORD_PASSWORD.search(url)
    return m.group(2).strip("'") if m else None


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***` (SQLite addresses are returned unchanged).

    Errs on the side of hiding: in a URL whose user part cannot be told apart from the rest,
    everything between the first `:` after the user name and the last `@` is masked.
    """
    if url.startswith("sqlite:"):
        return url
    if _is_url(url):
        scheme, rest = url.split("://", 1)
        before_query, sep, query = rest.partition("?")
        if "@" in before_query:
            userinfo, host = before_query.rsplit("@", 1)
            if ":" in userinfo:
                userinfo = userinfo.split(":", 1)[0] + ":" + MASK
            before_query = f"{userinfo}@{host}"
        return _QUERY_PASSWORD.sub(r"\g<1>" + MASK, f"{scheme}://{before_query}{sep}{query}")
    return _KEYWORD_PASSWORD.sub(r"\g<1>" + MASK, url)


def password_of(url: str) -> str | None:
    """The password in a PostgreSQL address, or None."""
    if url.startswith("sqlite:"):
        return None
    try:
        from psycopg2.extensions import parse_dsn

        password = parse_dsn(url).get("password")
    except Exception:  # unparsable: read it the way it is written
        password = _written_password(url)
    return password or None


def scrub(text: str, url: str) -> str:
    """`text` (an error message about `url`) with the password replaced by `***`.

    When libpq reads the address otherwise than it is written it quotes pieces of it, which
    may be pieces of the password (`postgresql://u:pa/ss@h` reads as host "u", port "pa"): then
    none of the text is kept, only that the address is malformed.
    """
    if url.startswith("sqlite:"):
        return text
    written = _written_password(url)
    try:
        from psycopg2.extensions import parse_dsn

        password = parse_dsn(url).get("password")
    except Exception:
        password = None
    if written and password != written:
        return ("the database address is malformed (libpq's message is not shown: it may quote"
                " the password); check [database] url")
    if password:
        for form in {password, unquote(password)}:
            text = text.replace(form, MASK)
    return text


def describe_address(url: str) -> str:
    """What messages call a database: the SQLite file, or host:port/dbname of PostgreSQL."""
    if url.startswith("sqlite:"):
        return url
    try:
        from psycopg2.extensions import parse_dsn

        params = parse_dsn(url)
    except Exception:
        return "(unparsable address)"
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or params.get("user") or ""
    return f"{host}:{port}/{dbname}"
