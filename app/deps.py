"""Request dependencies shared by every domain: settings and storage."""
from typing import Annotated

from fastapi import Depends

from app.config import Settings, get_settings
from app.storage import LocalStorage, get_storage

SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[LocalStorage, Depends(get_storage)]
