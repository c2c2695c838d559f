"""Pods start together on Kubernetes and each applies the migrations: on PostgreSQL they take
turns (an advisory lock in migrations/env.py), so four processes upgrading one fresh database at
once all succeed (without the lock, all but one fail on the tables the first created)."""
import os
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa

from helpers import ROOT

PG_URL = os.environ.get("ADAPT_TEST_DATABASE_URL", "")
UPGRADE = "import sys; from app.migrate import upgrade; upgrade(sys.argv[1])"


@pytest.mark.skipif(not PG_URL, reason="the lock is PostgreSQL's (ADAPT_TEST_DATABASE_URL)")
def test_processes_migrating_one_database_at_once_take_turns():
    name = f"adapt_migrate_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        procs = [subprocess.Popen([sys.executable, "-c", UPGRADE, url], cwd=ROOT,
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
        failures = [p.stderr.read()[-2000:] for p in procs if p.wait(timeout=300) != 0]
        assert not failures, failures[0]
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
