"""What every domain's repository shares: the tenant-scoped "get or 404"."""
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session

from app.errors import NotFound

Row = TypeVar("Row")


def get_owned(session: Session, model: type[Row], object_id: str, tenant: str, *,
              noun: str | None = None, param: str = "id", message: str | None = None,
              visible: Callable[[Row], bool] | None = None) -> Row:
    """The row with this id if the tenant owns it (and `visible` admits it), else 404. Another
    tenant's object answers exactly like a missing one: ids reveal nothing."""
    row = session.get(model, object_id)
    if row is None or row.tenant_id != tenant or (visible is not None and not visible(row)):
        raise NotFound(message or f"No {noun or model.__name__.lower()} with id {object_id!r}.",
                       param=param)
    return row
