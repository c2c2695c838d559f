"""Metrics, structured logs and request ids (see README, "Observability")."""
from app.observability.logs import configure_logging, log_context
from app.observability.metrics import observe_predict, record_model_cache, watch_loaded_models

__all__ = ["configure_logging", "log_context", "observe_predict", "record_model_cache",
           "watch_loaded_models"]
