from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TenantOwned


class Dataset(TenantOwned, Base):
    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    task: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(16))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    num_examples: Mapped[int]
    labels: Mapped[list]
    # Notes on an accepted upload (e.g. labels that look alike); None when there are none.
    warnings: Mapped[list | None]
    class_counts: Mapped[dict]
    text_column: Mapped[str] = mapped_column(String(255))
    label_column: Mapped[str] = mapped_column(String(255))
    storage_key: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16), default="ready")
