"""Request dependencies shared by every domain: settings and storage."""
from typing import Annotated

from fastapi import Depends

from app.config import Settings, get_settings
from app.storage import Storage, get_storage



# async: both are cached objects, so resolving them needs no thread-pool hop.
async def _settings() -> Settings:
    return get_settings()


async def _storage() -> Storage:
    return get_storage()


SettingsDep = Annotated[Settings, Depends(_settings)]
StorageDep = Annotated[Storage, Depends(_storage)]
