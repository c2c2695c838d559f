"""The `adapt` command line: the service (`serve`, `worker`) and a client of its API."""
from adapt.cli.main import app, main

__all__ = ["app", "main"]
