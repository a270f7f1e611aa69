"""API keys: created with a secret shown once, stored only as a SHA-256 hash.

Keys are 256-bit random secrets, so a fast hash is enough (there is nothing to brute-force) and a
lookup by hash leaks nothing about the secret; the final comparison is constant-time anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass, fields
from typing import Any, Literal

from cascade_gateway.budget.periods import Period
from cascade_gateway.storage.database import Database, Row

KEY_PREFIX = "cgk-"
Pressure = Literal["degrade", "reject"]


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key's settings, never its secret."""

    id: str
    name: str
    key_prefix: str
    created_at: float
    revoked_at: float | None = None
    budget_usd: float | None = None
    budget_period: Period = "month"
    rpm: int | None = None
    tpm: int | None = None
    cascades: tuple[str, ...] | None = None
    # None: the cascade's policy (or the gateway's default) decides.
    on_budget_pressure: Pressure | None = None

    def allows(self, route: str) -> bool:
        """Whether this key may call `route` (a cascade or model alias)."""
        return self.cascades is None or route in self.cascades

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["cascades"] = list(self.cascades) if self.cascades is not None else None
        return data


EDITABLE = ("name", "budget_usd", "budget_period", "rpm", "tpm", "cascades", "on_budget_pressure")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets (of any lengths)."""
    return hmac.compare_digest(hash_secret(given), hash_secret(expected))


def _from_row(row: Row) -> ApiKey:
    cascades = json.loads(row["cascades"]) if row["cascades"] is not None else None
    return ApiKey(
        id=row["id"],
        name=row["name"],
        key_prefix=row["key_prefix"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        budget_usd=row["budget_usd"],
        budget_period=row["budget_period"],
        rpm=row["rpm"],
        tpm=row["tpm"],
        cascades=tuple(cascades) if cascades is not None else None,
        on_budget_pressure=row["on_budget_pressure"],
    )


def _params(values: dict[str, Any]) -> dict[str, Any]:
    params = dict(values)
    if "cascades" in params:
        cascades = params["cascades"]
        params["cascades"] = json.dumps(list(cascades)) if cascades is not None else None
    return params


class KeyStore:
    """Keys in the gateway's database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        name: str,
        *,
        budget_usd: float | None = None,
        budget_period: Period = "month",
        rpm: int | None = None,
        tpm: int | None = None,
        cascades: list[str] | None = None,
        on_budget_pressure: Pressure | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (the only time the secret exists outside the caller)."""
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id="key_" + uuid.uuid4().hex[:16],
            name=name,
            key_prefix=secret[: len(KEY_PREFIX) + 4],
            created_at=time.time(),
            budget_usd=budget_usd,
            budget_period=budget_period,
            rpm=rpm,
            tpm=tpm,
            cascades=tuple(cascades) if cascades is not None else None,
            on_budget_pressure=on_budget_pressure,
        )
        row = _params(key.to_dict()) | {"key_hash": hash_secret(secret)}
        await self._db.execute(
            "INSERT INTO api_keys (id, name, key_hash, key_prefix, created_at, revoked_at, "
            "budget_usd, budget_period, rpm, tpm, cascades, on_budget_pressure) VALUES (:id, "
            ":name, :key_hash, :key_prefix, :created_at, :revoked_at, :budget_usd, "
            ":budget_period, :rpm, :tpm, :cascades, :on_budget_pressure)",
            row,
        )
        return key, secret

    async def authenticate(self, secret: str) -> ApiKey | None:
        """The live key whose secret this is, else None."""
        digest = hash_secret(secret)
        row = await self._db.fetchone("SELECT * FROM api_keys WHERE key_hash = :h", {"h": digest})
        if row is None or not hmac.compare_digest(row["key_hash"], digest):
            return None
        key = _from_row(row)
        return None if key.revoked_at is not None else key

    async def get(self, key_id: str) -> ApiKey | None:
        row = await self._db.fetchone("SELECT * FROM api_keys WHERE id = :id", {"id": key_id})
        return _from_row(row) if row is not None else None

    async def list(self) -> list[ApiKey]:
        rows = await self._db.fetchall("SELECT * FROM api_keys ORDER BY created_at")
        return [_from_row(r) for r in rows]

    async def update(self, key_id: str, changes: dict[str, Any]) -> ApiKey | None:
        """Change editable settings; None if there is no such key."""
        unknown = set(changes) - set(EDITABLE)
        if unknown:
            raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
        if changes:
            assignments = ", ".join(f"{name} = :{name}" for name in changes)
            await self._db.execute(
                f"UPDATE api_keys SET {assignments} WHERE id = :id",
                _params(changes) | {"id": key_id},
            )
        return await self.get(key_id)

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key for good; False if there was no live key with that id."""
        changed = await self._db.execute(
            "UPDATE api_keys SET revoked_at = :t WHERE id = :id AND revoked_at IS NULL",
            {"t": time.time(), "id": key_id},
        )
        return changed == 1
