from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class SharedGeneration(Base):
    """A counter that every API process on every machine compares with the one it saw when it
    cached something (app.shared_state.Generation, e.g. the key-revocation generation): kept here
    when the database is PostgreSQL and there is no Redis. No row = generation 0."""

    __tablename__ = "shared_generations"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)
