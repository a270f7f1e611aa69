"""Shared services as typed FastAPI dependencies (built once, kept on `app.state`).

They are `async def` on purpose: FastAPI runs plain `def` dependencies in a thread pool, which
would cost a thread hop per dependency per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from cascade_gateway.cascade.engine import CascadeEngine
from cascade_gateway.services import Services


async def get_services(request: Request) -> Services:
    return request.app.state.services


async def get_engine(request: Request) -> CascadeEngine:
    return request.app.state.services.engine


async def get_request_id(request: Request) -> str:
    return request.state.request_id


ServicesDep = Annotated[Services, Depends(get_services)]
EngineDep = Annotated[CascadeEngine, Depends(get_engine)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
