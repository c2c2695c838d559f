"""SQLAlchemy tables, one file per table, all on one metadata."""
from app.models.api_key import ApiKey
from app.models.base import Base
from app.models.checkpoint import Checkpoint
from app.models.dataset import Dataset
from app.models.export import EXPORT_FINAL_STATUSES, Export
from app.models.idempotency_key import IdempotencyKey
from app.models.job import ACTIVE_STATUSES, FINAL_STATUSES, Job
from app.models.job_event import JobEvent
from app.models.job_metric import JobMetric
from app.models.model import Model
from app.models.model_selection import ModelSelection
from app.models.quality_report import QUALITY_FINAL_STATUSES, QualityReport
from app.models.shared_generation import SharedGeneration
from app.models.uploaded_base_model import UploadedBaseModel
from app.models.webhook_delivery import WebhookDelivery
from app.models.webhook_endpoint import WebhookEndpoint
from app.models.worker import Worker

__all__ = [
    "ACTIVE_STATUSES", "EXPORT_FINAL_STATUSES", "FINAL_STATUSES", "ApiKey", "Base", "Checkpoint",
    "Dataset", "Export", "IdempotencyKey", "Job",
    "JobEvent",
    "JobMetric", "Model", "ModelSelection", "QUALITY_FINAL_STATUSES", "QualityReport",
    "SharedGeneration", "UploadedBaseModel", "WebhookDelivery", "WebhookEndpoint",
    "Worker",
]
