"""Celery glue: the app, thin tasks that take ids, and the runner that drives a recipe."""
