"""Shapes shared by every domain: timestamps, lists, the error body."""
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

T = TypeVar("T")


def _iso_utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive datetimes; they were written as UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


Timestamp = Annotated[datetime, PlainSerializer(_iso_utc, return_type=str)]
OptionalTimestamp = Annotated[datetime | None, PlainSerializer(_iso_utc, return_type=str | None)]


def _integral(value: Any) -> Any:
    """JSON Schema's integer includes 2.0: strict models take an integral float as the int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Strings that are stored or looked up: no NUL character (PostgreSQL can hold none), said in the
# OpenAPI document as well, on SQLite and PostgreSQL alike.
NO_NUL = r"^[^\x00]*$"
Stored = Annotated[str, Field(pattern=NO_NUL)]

# An integer field of a request body (strict models refuse 2.0 otherwise).
Integer = Annotated[int, BeforeValidator(_integral)]


def bounded(ge: int | None = None, le: int | None = None) -> Any:
    """An Integer within bounds that stay in the OpenAPI document (minimum/maximum) also when
    the field is optional (`bounded(1, 10) | None`: Field(ge=…) on the union would not)."""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_integral)]


def links(param: str, *operation_ids: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI links from a create operation's 201 to the operations that take the new id (as
    path parameter `param`), for clients and stateful testing (schemathesis)."""
    return {201: {"links": {op: {"operationId": op, "parameters": {param: "$response.body#/id"}}
                            for op in operation_ids}}}


class ApiModel(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)


class ListOf(ApiModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool = False


class ErrorDetail(BaseModel):
    code: str
    message: str
    param: str | None = None
    details: list[dict[str, Any]] = []


class ErrorBody(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
}
