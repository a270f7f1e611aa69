"""The admin API (master key only): keys, spend, and the ledger export.

POST   /admin/keys            create a key; the response is the only time its secret is shown
GET    /admin/keys            every key with its current budget status
GET    /admin/keys/{id}       one key: spend this period, remaining budget, reset time
PATCH  /admin/keys/{id}       change budget, period, limits, cascades, policy, name
DELETE /admin/keys/{id}       revoke (the next request with it gets 401)
GET    /admin/spend           spend grouped by key, model, cascade or day
GET    /admin/ledger          the ledger as JSON lines (default) or CSV
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from cascade_gateway.api.auth import MasterDep
from cascade_gateway.api.deps import ServicesDep
from cascade_gateway.auth.keys import ApiKey
from cascade_gateway.budget.periods import Period
from cascade_gateway.config import Pressure
from cascade_gateway.errors import InvalidRequest, NotFound
from cascade_gateway.services import Services

router = APIRouter(prefix="/admin", tags=["admin"])


class KeySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    budget_usd: float | None = Field(default=None, ge=0)
    budget_period: Period = "month"
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    cascades: list[str] | None = None
    on_budget_pressure: Pressure | None = None


class NewKey(KeySettings):
    name: str = Field(min_length=1, max_length=200)


class KeyChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    budget_usd: float | None = Field(default=None, ge=0)
    budget_period: Period | None = None
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    cascades: list[str] | None = None
    on_budget_pressure: Pressure | None = None


def _check_routes(services: Services, routes: list[str] | None) -> None:
    unknown = [r for r in routes or () if r not in services.engine.routes]
    if unknown:
        raise InvalidRequest(f"Unknown cascades or models: {', '.join(unknown)}", param="cascades")


async def _describe(services: Services, key: ApiKey) -> dict[str, Any]:
    data = key.to_dict()
    data["budget"] = await services.budgets.status(key)
    return data


async def _key_or_404(services: Services, key_id: str) -> ApiKey:
    key = await services.keys.get(key_id)
    if key is None:
        raise NotFound(f"No key with id {key_id!r}.", param="key_id")
    return key


@router.post("/keys", status_code=201)
async def create_key(body: NewKey, services: ServicesDep, _: MasterDep) -> dict[str, Any]:
    """Create a key. `key` in the response is the secret: it is not stored and not shown again."""
    _check_routes(services, body.cascades)
    key, secret = await services.keys.create(body.name, **body.model_dump(exclude={"name"}))
    return {**await _describe(services, key), "key": secret}


@router.get("/keys")
async def list_keys(services: ServicesDep, _: MasterDep) -> dict[str, Any]:
    return {"data": [await _describe(services, key) for key in await services.keys.list()]}


@router.get("/keys/{key_id}")
async def show_key(key_id: str, services: ServicesDep, _: MasterDep) -> dict[str, Any]:
    return await _describe(services, await _key_or_404(services, key_id))


@router.patch("/keys/{key_id}")
async def update_key(
    key_id: str, body: KeyChanges, services: ServicesDep, _: MasterDep
) -> dict[str, Any]:
    """Change a key's settings; fields sent as null are cleared (e.g. no budget)."""
    await _key_or_404(services, key_id)
    changes = body.model_dump(exclude_unset=True)
    if changes.get("budget_period", "month") is None:
        raise InvalidRequest("budget_period cannot be null", param="budget_period")
    _check_routes(services, changes.get("cascades"))
    key = await services.keys.update(key_id, changes)
    assert key is not None
    return await _describe(services, key)


@router.delete("/keys/{key_id}")
async def revoke_key(key_id: str, services: ServicesDep, _: MasterDep) -> dict[str, Any]:
    """Revoke a key at once, on every replica (keys are checked against the database)."""
    if not await services.keys.revoke(key_id):
        raise NotFound(f"No live key with id {key_id!r}.", param="key_id")
    return {"id": key_id, "revoked": True}


@router.get("/spend")
async def spend(
    services: ServicesDep,
    _: MasterDep,
    group_by: Literal["key", "model", "cascade", "day"] = "key",
    since: float | None = Query(default=None, description="unix time"),
) -> dict[str, Any]:
    return {"group_by": group_by, "data": await services.ledger.spend(group_by, since)}


@router.get("/ledger")
async def export_ledger(
    services: ServicesDep, _: MasterDep, format: Literal["jsonl", "csv"] = "jsonl"
) -> StreamingResponse:
    """Every recorded request, oldest first."""
    media = "text/csv" if format == "csv" else "application/x-ndjson"
    return StreamingResponse(
        services.ledger.export(format),
        media_type=media,
        headers={"content-disposition": f"attachment; filename=ledger.{format}"},
    )
