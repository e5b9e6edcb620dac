"""/tokens: API tokens (`pcnet.app.services.tokens`)."""

from __future__ import annotations

from pcnet.web import _schemas as S
from pcnet.web._fields import Id, Object, Ref
from pcnet.web.api._base import PAGING, ApiBase, name_field, page, ref

route = ApiBase.route

TOKEN_CREATE = Object({
    "name": name_field(required=True, description="what the token is for"),
    "user": Ref("user", nullable=True, description="the administrator the token acts for"),
})


class TokenRoutes(ApiBase):
    @route("GET", "/tokens", summary="List API tokens", tag="tokens", query=PAGING,
           response=S.TOKEN_PAGE)
    async def list_tokens(self, call):
        tokens = await self.services.tokens.list()
        return page(tokens, call.query["offset"], call.query["limit"], S.token_json)

    @route("POST", "/tokens", summary="Create an API token", tag="tokens", body=TOKEN_CREATE,
           status=201, response=S.NEW_TOKEN, errors=(400, 404),
           description="The token is in the reply only; pcnet keeps just its hash.")
    async def create_token(self, call):
        user = call.body.get("user")
        token, record = await self.services.tokens.create(
            call.actor, call.body["name"], user=None if user is None else ref(user))
        return {"token": token, "api_token": S.token_json(record)}

    @route("DELETE", "/tokens/<token>", summary="Revoke an API token", tag="tokens",
           params={"token": Id()}, status=204, errors=(400, 404))
    async def revoke_token(self, call):
        await self.services.tokens.revoke(call.actor, call.params["token"])
