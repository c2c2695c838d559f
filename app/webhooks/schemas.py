import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.schemas import NO_NUL, ApiModel, OptionalTimestamp, Timestamp
from app.webhooks.destination import check_shape

EVENTS = ("job.succeeded", "job.failed", "job.cancelled")
Event = Literal["job.succeeded", "job.failed", "job.cancelled"]


_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
# What check_url accepts, as a pattern the OpenAPI document shows: scheme, a host name or IPv4
# address (no user:password@), an optional port, then a path/query without whitespace (what
# str.isspace calls whitespace, spelled out: regex dialects differ on \s) or control characters.
URL_PATTERN = (r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~%!$&'()*+,;=-]+(:" + _PORT + r")?"
               r"([/?#][^\x00-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*)?$")


def check_url(url: str) -> str:
    """An absolute http(s) URL with a host and no credentials, in the shape the OpenAPI document
    shows; the message says what is wrong. Where it may point is checked when each delivery is
    sent (app/webhooks/destination.py)."""
    check_shape(url)
    if not re.fullmatch(URL_PATTERN, url):  # what the OpenAPI document promises, exactly
        raise ValueError("must be http(s)://host[:port][/path], with a host name or IPv4 "
                         "address (no user:password@)")
    return url


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    url: str = Field(min_length=1, max_length=2048, json_schema_extra={"pattern": URL_PATTERN},
                     description="Where events are POSTed: an http:// or https:// URL.")
    events: list[Event] = Field(min_length=1, max_length=len(EVENTS),
                                description="Which job endings to send.")
    description: str | None = Field(default=None, max_length=500, pattern=NO_NUL)

    @field_validator("url")
    @classmethod
    def _valid_url(cls, url: str) -> str:
        return check_url(url)

    @field_validator("events")
    @classmethod
    def _unique(cls, events: list[str]) -> list[str]:
        return list(dict.fromkeys(events))


class WebhookOut(ApiModel):
    object: Literal["webhook"] = "webhook"
    id: str
    url: str
    events: list[str]
    description: str | None
    created_at: Timestamp


class WebhookCreated(WebhookOut):
    # Shown once: verify each delivery's Adapt-Signature with it (README, "Webhooks").
    secret: str


class DeliveryOut(ApiModel):
    object: Literal["webhook_delivery"] = "webhook_delivery"
    id: str
    webhook: str = Field(validation_alias="endpoint_id")
    event: str
    event_id: str
    job: str = Field(validation_alias="job_id")
    status: Literal["pending", "succeeded", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: OptionalTimestamp
    created_at: Timestamp
    last_attempt_at: OptionalTimestamp
    completed_at: OptionalTimestamp

