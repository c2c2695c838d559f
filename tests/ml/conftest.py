"""tests/ml checks models and data on their own: no database, no broker, no worker. `.ci/run`
runs it on the embedded default only (its PostgreSQL + Redis pass skips it), so a test here that
asks for the service is refused at collection: it belongs in another folder."""
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SERVICE = {"client", "worker", "upload"}


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(item.path).parents and SERVICE & set(item.fixturenames):
            raise pytest.UsageError(f"{item.nodeid} uses {sorted(SERVICE & set(item.fixturenames))}"
                                    ": tests/ml runs once, without the database (tests/ml/conftest.py)")
