"""Bearer tokens for the HTTP APIs: operators, and agencies that pick up replies.

Tokens come from `MYNUMBER_HTTP_API_TOKENS` ('principal=token,...') or the file named by
`MYNUMBER_HTTP_API_TOKENS_FILE`; only their SHA-256 digests are kept in memory. The principal
`operator` may use operator routes (audit trails, lookups, sweeps, resolutions); a partner's
principal is its partner id, `<type>/<local id>` (e.g. `police/tokyo`), and `operator_or(...)`
keeps a route to the operator and partners of the types named.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from mynumber_contracts.partners import PartnerType, partner_type_of

OPERATOR = "operator"
_bearer = HTTPBearer(auto_error=False, description="A token from MYNUMBER_HTTP_API_TOKENS.")


class ApiTokens:
    def __init__(self, text: str) -> None:
        self._principals: dict[str, str] = {}
        for entry in filter(None, (part.strip() for part in text.split(","))):
            principal, separator, token = entry.partition("=")
            if not separator or not principal.strip() or len(token.strip()) < 16:
                raise ValueError("each API token must read 'principal=token' with a token of at least 16 characters")
            self._principals[_digest(token.strip())] = principal.strip()

    def principal(self, token: str) -> str | None:
        digest = _digest(token)
        for known, principal in self._principals.items():
            if hmac.compare_digest(known, digest):
                return principal
        return None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def authenticated_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """FastAPI dependency: the principal of a valid bearer token, or 401."""
    tokens: ApiTokens = request.app.state.api_tokens
    principal = credentials and tokens.principal(credentials.credentials)
    if not principal:
        raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    return principal


async def operator(principal: Annotated[str, Depends(authenticated_principal)]) -> str:
    """FastAPI dependency: only the operator principal passes."""
    if principal != OPERATOR:
        raise HTTPException(403, "this route is for operators")
    return principal


def operator_or(*kinds: PartnerType, refusal: str) -> Callable[[str], Awaitable[str]]:
    """FastAPI dependency: the operator, or a partner of one of these types; any other valid token gets 403."""
    allowed = frozenset(kinds)

    async def operator_or_partner(principal: Annotated[str, Depends(authenticated_principal)]) -> str:
        is_partner = bool(principal.partition("/")[2]) and partner_type_of(principal) in allowed  # `<type>/<local id>`
        if principal != OPERATOR and not is_partner:
            raise HTTPException(403, refusal)
        return principal

    return operator_or_partner
