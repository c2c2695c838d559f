"""What every domain's repository shares: the tenant-scoped "get or 404"."""
from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

from sqlalchemy import Connection, Select, bindparam, select
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


def columns(model: type, names: tuple[str, ...]) -> list:
    """The model's attributes as Core columns labelled with their attribute names."""
    return [getattr(model, name).label(name) for name in names]


@lru_cache
def _owned_select(model: type, names: tuple[str, ...]) -> Select:
    # built once: constructing the statement costs more than running it on a warm connection
    return select(*columns(model, names)).where(model.id == bindparam("object_id"),
                                                model.tenant_id == bindparam("tenant"))


def owned_row(conn: Connection, model: type, names: tuple[str, ...], object_id: str,
              tenant: str) -> dict:
    """get_owned on the read path: the named attributes of the tenant's row as a dict (one Core
    SELECT, no ORM object), else the same 404."""
    row = conn.execute(_owned_select(model, names),
                       {"object_id": object_id, "tenant": tenant}).mappings().first()
    if row is None:
        raise NotFound(f"No {model.__name__.lower()} with id {object_id!r}.", param="id")
    return dict(row)
