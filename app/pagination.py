"""Cursor pagination over time-ordered ids: newest first, `after` is the last id of the prior page."""
from typing import Annotated

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Connection, Select
from sqlalchemy.orm import Session

from app.errors import AppError


class Page(BaseModel):
    limit: int = 20
    after: str | None = None


async def page_params(limit: Annotated[int, Query(ge=1, le=100)] = 20,
                after: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_]*$",
                                                  description="the last id of the prior page")
                                  ] = None) -> Page:
    return Page(limit=limit, after=after)


def paginate(session: Session | Connection, stmt: Select, id_column, page: Page,
             scope: Select | None = None, mappings: bool = False) -> tuple[list, bool]:
    """Rows of stmt, newest first, after page.after; (rows, has_more). The rows are its first
    column's values (ORM objects for select(Model)), or with `mappings` dicts of every column.

    `after` must name a row of `scope` (default: stmt; a wider one when stmt filters on something
    that may change between pages, such as a status): an unknown id, or another tenant's, is a 400
    `invalid_cursor` (the same answer for both), never a silent first page."""
    if page.after:
        known = (stmt if scope is None else scope).with_only_columns(id_column).where(
            id_column == page.after).limit(1)
        if session.scalar(known) is None:
            raise AppError("after: not a cursor of this list (use the last id of the prior page)",
                           code="invalid_cursor", param="after")
        stmt = stmt.where(id_column < page.after)
    result = session.execute(stmt.order_by(id_column.desc()).limit(page.limit + 1))
    rows = [dict(r) for r in result.mappings()] if mappings else list(result.scalars())
    return rows[: page.limit], len(rows) > page.limit
