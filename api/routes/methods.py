from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import TenantDep
from kdcore.methods import list_methods

router = APIRouter(prefix="/v1/methods", tags=["methods"])


@router.get("")
async def get_methods(tenant: TenantDep) -> dict[str, list[dict[str, Any]]]:
    return {"items": [method.describe() for method in list_methods()]}
