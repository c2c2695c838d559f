"""The API served by uvicorn on a free loopback port, in a thread of the test process (no second
import of torch), shared by the SDK and CLI test modules; keys are required while a module runs."""
import socket
import threading
import time
from dataclasses import dataclass

import httpx
import pytest
import uvicorn


@dataclass
class LiveAPI:
    url: str
    key: str  # an admin key of tenant "sdk"


_live: LiveAPI | None = None


def _serve() -> str:
    from app.main import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, name="live-api", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return url
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError("the API did not start")


def start() -> LiveAPI:
    """Once a session: the server and an admin key for tenant `sdk`."""
    global _live
    if _live is None:
        from app.db import session_scope
        from app.keys import service as keys

        with session_scope() as s:
            _, key = keys.create(s, "sdk", "sdk-tests", True)
        _live = LiveAPI(_serve(), key)
    return _live


@pytest.fixture(scope="module")
def live(environment, worker):
    """The live API with keys required (as when it listens beyond loopback)."""
    before, environment.auth = environment.auth, "on"
    try:
        yield start()
    finally:
        environment.auth = before
