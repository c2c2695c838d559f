"""Cursor pagination over time-ordered ids: newest first, `after` is the last id of the prior page."""
from typing import Annotated

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select
from sqlalchemy.orm import Session


class Page(BaseModel):
    limit: int = 20
    after: str | None = None


async def page_params(limit: Annotated[int, Query(ge=1, le=100)] = 20,
                after: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_]*$",
                                                  description="the last id of the prior page")
                                  ] = None) -> Page:
    return Page(limit=limit, after=after)


def paginate(session: Session, stmt: Select, id_column, page: Page) -> tuple[list, bool]:
    """Rows of stmt, newest first, after page.after; (rows, has_more)."""
    if page.after:
        stmt = stmt.where(id_column < page.after)
    rows = list(session.scalars(stmt.order_by(id_column.desc()).limit(page.limit + 1)))
    return rows[: page.limit], len(rows) > page.limit
