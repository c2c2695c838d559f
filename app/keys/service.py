"""API keys: created (the secret shown once), listed, revoked; verified in constant time."""
import hashlib
import hmac
import re
import secrets

from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.ids import new_id
from app.keys import repository
from app.models import ApiKey
from app.models.base import utcnow
from app.shared_state import Generation

TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
revocations = Generation("key-revocations")
KEY = re.compile(r"^adapt_([a-z0-9]{12})_([A-Za-z0-9_-]{32,64})$")


def _digest(secret: str) -> str:
    # The secret is 256 random bits: a fast hash is enough (no dictionary to guess from).
    return hashlib.sha256(secret.encode()).hexdigest()


def create(session: Session, tenant: str, name: str, is_admin: bool = False) -> tuple[ApiKey, str]:
    """A new key for tenant; returns (row, the full key — shown this once)."""
    if not TENANT.match(tenant):
        raise InvalidInput("tenant must be 1-63 lowercase letters, digits, '-' or '_'.",
                           param="tenant")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(id=new_id("key"), tenant_id=tenant, name=name, prefix=prefix,
                 secret_hash=_digest(secret), is_admin=is_admin)
    session.add(row)
    session.flush()
    return row, f"adapt_{prefix}_{secret}"


def verify(session: Session, presented: str) -> ApiKey | None:
    """The live key row for a presented key, or None (unknown, malformed or revoked)."""
    m = KEY.match(presented or "")
    if not m:
        return None
    row = repository.by_prefix(session, m.group(1))
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_hash, _digest(m.group(2))):
        return None
    return row


def list_keys(session: Session, tenant: str | None = None) -> list[ApiKey]:
    return repository.list_keys(session, tenant)


def revoke(session: Session, key_id: str) -> ApiKey:
    """Revoke the key; once that has committed, every API process's key cache is outdated (the
    revocation generation is bumped in this transaction, or right after it commits)."""
    row = repository.get(session, key_id)
    if row is None:
        raise NotFound(f"No API key {key_id!r}.", param="id")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        revocations.bump(session)
    return row
