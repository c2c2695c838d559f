"""Pure PyTorch training and inference: no FastAPI, Celery or SQLAlchemy imports here."""
