"""Hashing of passwords, PINs, node credentials and API tokens.

Passwords and PINs are low-entropy secrets a person chose, so they get a slow, salted,
memory-hard hash (scrypt from the standard library) that makes guessing expensive. API tokens
and node credentials are 32 random bytes made by pcnet itself: they cannot be guessed, so a
fast SHA-256 is enough and lets every API request look its token up by hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# scrypt cost: N=2**14, r=8, p=1 takes ~50 ms and 16 MiB here: slow for a guesser, fine for a login.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2 ** 14, 8, 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_secret(secret: str) -> str:
    """A slow salted hash of a password or PIN, as `scrypt$N$r$p$salt$hash`."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P,
                            maxmem=64 * 1024 * 1024, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, stored: str | None) -> bool:
    """Does `secret` match the stored hash? False for no hash or a malformed one."""
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = hashlib.scrypt(secret.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                                  maxmem=64 * 1024 * 1024, dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, _unb64(digest))


def new_token() -> str:
    """A new API token or node credential: 32 random bytes, URL-safe text."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 of a machine-made token, hex. Stored and looked up instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()
