"""`cascade-gateway keys create|list|show|revoke`: keys managed straight in the database."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from cascade_gateway.auth.keys import ApiKey, KeyStore


async def _with_store(config_path: str, action: Any) -> Any:
    from cascade_gateway.accounting.ledger import Ledger
    from cascade_gateway.budget.budgets import Budgets
    from cascade_gateway.budget.counters import SqlCounters
    from cascade_gateway.cli import load_or_exit
    from cascade_gateway.storage.database import open_database
    from cascade_gateway.storage.migrations import migrate

    config = load_or_exit(config_path)
    db = await open_database(config.storage.database_url)
    try:
        await migrate(db)
        budgets = Budgets(config.budgets, Ledger(db))
        # Spend shown here is the database's view; with Redis, live counters may be ahead.
        budgets.counters = SqlCounters(db)
        return await action(KeyStore(db), budgets)
    finally:
        await db.aclose()


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


async def _described(budgets: Any, key: ApiKey) -> dict[str, Any]:
    return {**key.to_dict(), "budget": await budgets.status(key)}


def _create(args: argparse.Namespace) -> int:
    async def action(keys: KeyStore, budgets: Any) -> None:
        key, secret = await keys.create(
            args.name,
            budget_usd=args.budget_usd,
            budget_period=args.budget_period,
            rpm=args.rpm,
            tpm=args.tpm,
            cascades=args.cascade,
            on_budget_pressure=args.on_budget_pressure,
        )
        _print({**key.to_dict(), "key": secret})

    asyncio.run(_with_store(args.config, action))
    return 0


def _list(args: argparse.Namespace) -> int:
    async def action(keys: KeyStore, budgets: Any) -> None:
        _print([await _described(budgets, key) for key in await keys.list()])

    asyncio.run(_with_store(args.config, action))
    return 0


def _show(args: argparse.Namespace) -> int:
    async def action(keys: KeyStore, budgets: Any) -> int:
        key = await keys.get(args.id)
        if key is None:
            print(f"error: no key with id {args.id!r}")
            return 1
        _print(await _described(budgets, key))
        return 0

    return asyncio.run(_with_store(args.config, action))


def _revoke(args: argparse.Namespace) -> int:
    async def action(keys: KeyStore, budgets: Any) -> int:
        if not await keys.revoke(args.id):
            print(f"error: no live key with id {args.id!r}")
            return 1
        print(f"revoked {args.id}")
        return 0

    return asyncio.run(_with_store(args.config, action))


def add_commands(commands: Any) -> None:
    """Add `keys` and its subcommands to the CLI."""
    keys = commands.add_parser("keys", help="create, list, show and revoke API keys")
    keys.add_argument("--config", required=True, help="the gateway's YAML config")
    actions = keys.add_subparsers(dest="keys_command", required=True)

    create = actions.add_parser("create", help="create a key and print its secret once")
    create.add_argument("name")
    create.add_argument("--budget-usd", type=float)
    create.add_argument("--budget-period", choices=["day", "month", "total"], default="month")
    create.add_argument("--rpm", type=int)
    create.add_argument("--tpm", type=int)
    create.add_argument("--cascade", action="append", help="allowed cascade/model (repeatable)")
    create.add_argument("--on-budget-pressure", choices=["degrade", "reject"])
    create.set_defaults(run=_create)

    actions.add_parser("list", help="every key with its budget status").set_defaults(run=_list)
    show = actions.add_parser("show", help="one key with its budget status")
    show.add_argument("id")
    show.set_defaults(run=_show)
    revoke = actions.add_parser("revoke", help="revoke a key for good")
    revoke.add_argument("id")
    revoke.set_defaults(run=_revoke)
