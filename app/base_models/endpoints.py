from fastapi import APIRouter, Depends

from app.auth import current_caller

from app.base_models import catalog
from app.deps import SettingsDep
from app.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/v1/base-models", tags=["base models"],
                   dependencies=[Depends(current_caller)], responses=ERROR_RESPONSES)


@router.get("")
def list_base_models(settings: SettingsDep) -> dict:
    """The catalog of base models that jobs can adapt."""
    return {"object": "list", "data": [e.to_api() for e in catalog.list_entries(settings)],
            "has_more": False}
