"""The adapt Python SDK: `from adapt import Client`."""
__version__ = "0.1.0"

from adapt.client import AsyncClient, Client  # noqa: E402
from adapt.errors import (AdaptError, APIConnectionError, APITimeoutError,  # noqa: E402
                          BadRequest, Conflict, NotFound, PermissionDenied, RateLimited,
                          ServerError, ServiceUnavailable, TooLarge, Unauthorized,
                          UnsupportedMediaType, ValidationError)
from adapt.types import (ApiKey, BaseModelInfo, Checkpoint, CreatedApiKey, Dataset,  # noqa: E402
                         DatasetQuality, Evaluation, Explained, ExplanationResult, Export,
                         Heatmap, Job, JobEvent, JobProgress, Metric, Model, ModelSelection,
                         Prediction, PredictionList, PredictionResult, QualityReport,
                         WordScore)

__all__ = [
    "AsyncClient", "Client", "AdaptError", "APIConnectionError", "APITimeoutError", "BadRequest",
    "Conflict", "NotFound",
    "PermissionDenied", "RateLimited", "ServerError", "ServiceUnavailable", "TooLarge",
    "Unauthorized", "UnsupportedMediaType", "ValidationError", "ApiKey", "BaseModelInfo",
    "Checkpoint", "CreatedApiKey", "Dataset", "Evaluation", "Export", "Job", "JobEvent",
    "JobProgress", "Metric", "Model", "ModelSelection", "Prediction", "PredictionList",
    "PredictionResult",
    "Explained", "ExplanationResult", "Heatmap", "WordScore", "DatasetQuality", "QualityReport",
]
