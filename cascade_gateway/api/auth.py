"""Who is calling: the master key, an API key, or anyone (when no master key is set)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import Headers

from cascade_gateway.api.deps import get_services
from cascade_gateway.auth.keys import ApiKey, same_secret
from cascade_gateway.errors import AuthenticationError, PermissionDenied
from cascade_gateway.services import Services


@dataclass(slots=True)
class Caller:
    """The authenticated caller; `key` is None for the master key and for an open gateway."""

    key: ApiKey | None = None
    is_master: bool = False

    @property
    def sees_everything(self) -> bool:
        return self.key is None


def presented_secret(headers: Headers) -> str | None:
    """`Authorization: Bearer <key>` (OpenAI's SDK) or `x-api-key: <key>` (Anthropic's)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


async def identify(services: Services, headers: Headers) -> Caller:
    """The caller a request's headers name, or a 401 in OpenAI's shape."""
    master = services.config.master_key
    if master is None:
        return Caller()
    secret = presented_secret(headers)
    if secret is None:
        raise AuthenticationError(
            "You didn't provide an API key. Send it as `Authorization: Bearer <key>`."
        )
    if same_secret(secret, master.get_secret_value()):
        return Caller(is_master=True)
    key = await services.keys.authenticate(secret)
    if key is None:
        raise AuthenticationError("Incorrect API key provided, or the key was revoked.")
    return Caller(key=key)


async def authenticate(request: Request) -> Caller:
    """The caller of a FastAPI route (its dependency): `identify` on the request's headers."""
    return await identify(await get_services(request), request.headers)


async def require_master(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
    if not caller.is_master:
        raise PermissionDenied("This endpoint needs the master key.", code="master_key_required")
    return caller


CallerDep = Annotated[Caller, Depends(authenticate)]
MasterDep = Annotated[Caller, Depends(require_master)]
