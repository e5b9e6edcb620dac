"""API tokens: made (shown once, kept as a SHA-256), revoked, and checked on every admin API
request (`authenticate`, which records the token's last use)."""

from __future__ import annotations

import re

from pcnet.app.services._base import Service
from pcnet.app.services.actor import Actor, require_admin
from pcnet.domain import rules as R
from pcnet.domain.model import ApiToken
from pcnet.domain.secrets import hash_token, new_token
from pcnet.errors import Forbidden, NotFound, Unauthorized

_TOKEN_SYNTAX = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
MAX_TOKEN_LENGTH = 512


class TokenRefused(Unauthorized):
    """The token is unknown, revoked, or its user no longer exists."""


class TokenService(Service):
    async def list(self) -> list[ApiToken]:
        return sorted(await self.store.list_api_tokens(), key=lambda t: t.id)

    async def create(self, actor: Actor, name: str, *, user=None) -> tuple[str, ApiToken]:
        """A new token named `name`, acting for the administrator `user` (id or username;
        None: a service token): (the token, shown only now, and its record)."""
        require_admin(actor, "create API tokens")
        R.NAME.check(name, "name")
        user_id = None
        if user is not None:
            owner = await self.services.users.get(user)
            if owner.disabled or not owner.admin:
                raise R.invalid("user", f"{owner.username} is disabled or not an administrator")
            user_id = owner.id
        token = new_token()
        record = await self.store.create_api_token(
            name, hash_token(token), user_id=user_id,
            audit=self.audit(actor, "token.create", "token"))
        self.ctx.publish("token", record.id, "create", record.name)
        return token, record

    async def revoke(self, actor: Actor, token_id: int) -> None:
        require_admin(actor, "revoke API tokens")
        record = next((t for t in await self.store.list_api_tokens() if t.id == token_id), None)
        if record is None:
            raise NotFound(f"no API token with id {token_id}")
        await self.store.revoke_api_token(token_id, audit=self.audit(
            actor, "token.revoke", "token", before=record, after=None))
        self.ctx.publish("token", token_id, "delete", record.name)

    async def authenticate(self, token: str, address: str = "") -> Actor:
        """The actor of a request bearing `token`: TokenRefused for an unknown or revoked one,
        Forbidden when its user is disabled or no longer an administrator."""
        if not token or len(token) > MAX_TOKEN_LENGTH or not _TOKEN_SYNTAX.fullmatch(token):
            raise TokenRefused("Authorization: unknown or revoked API token")
        record = await self.store.find_api_token(hash_token(token))
        if record is None:
            raise TokenRefused("Authorization: unknown or revoked API token")
        if record.user_id is not None:
            try:
                user = await self.store.get_user(record.user_id)
            except NotFound:
                raise TokenRefused("Authorization: the token's user no longer exists") from None
            if user.disabled or not user.admin:
                raise Forbidden(f"the token's user {user.username} is disabled or not an administrator")
        return Actor.for_token(record, address)
