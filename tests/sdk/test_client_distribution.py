"""adapt-client (clients/python) is light: it installs without the server or torch, imports
without `app`, and its `adapt` script lists no server commands when the server is absent."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import adapt

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "python"
SERVER_ONLY = {"torch", "fastapi", "starlette", "uvicorn", "sqlalchemy", "celery",
               "transformers", "adapt-server"}


def test_the_sdk_under_test_is_the_client_distribution():
    assert Path(adapt.__file__).resolve().is_relative_to(CLIENT / "adapt")


def test_the_client_never_imports_the_server():
    offenders = [str(path) for path in (CLIENT / "adapt").rglob("*.py")
                 if re.search(r"^\s*(from|import)\s+app\b", path.read_text(), re.M)]
    assert offenders == []


@pytest.mark.slow_install
def test_client_installs_alone_in_a_fresh_venv(tmp_path):
    """A real `pip install` (from PyPI) into a new venv: httpx and pydantic, nothing of the server;
    without the `cli` extra `adapt` says what to install, with it `serve` is not listed."""
    source = tmp_path / "src"  # a copy: pip builds in the source tree (build/, *.egg-info)
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                                  "__pycache__"))
    venv = tmp_path / "venv"
    python = shutil.which("python3.11") or sys.executable
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
        assert not check or out.returncode == 0, (cmd, out.stdout[-3000:], out.stderr[-3000:])
        return out

    def installed() -> set[str]:
        listing = run(str(venv / "bin" / "pip"), "list", "--format=json").stdout
        return {p["name"].lower().replace("_", "-") for p in json.loads(listing)}

    run(python, "-m", "venv", str(venv))
    run(str(venv / "bin" / "pip"), "install", "-q", str(source))
    names = installed()
    assert {"adapt-client", "httpx", "pydantic"} <= names
    assert names.isdisjoint(SERVER_ONLY | {"typer", "rich"}), names
    out = run(str(venv / "bin" / "python"), "-c",
              "import sys, adapt; adapt.Client; print(adapt.__file__, 'app' in sys.modules)")
    file, app_imported = out.stdout.split()
    assert str(venv) in file and app_imported == "False"

    out = run(str(venv / "bin" / "adapt"), "datasets", "list", check=False)
    assert out.returncode == 1 and "install adapt-client[cli]" in out.stderr

    run(str(venv / "bin" / "pip"), "install", "-q", f"{source}[cli]")
    names = installed()
    assert {"typer", "rich"} <= names and names.isdisjoint(SERVER_ONLY), names
    out = run(str(venv / "bin" / "adapt"), "--help")
    assert "datasets" in out.stdout and "jobs" in out.stdout
    assert "serve" not in out.stdout and "worker" not in out.stdout
    out = run(str(venv / "bin" / "adapt"), "serve", check=False)
    assert out.returncode == 2 and "No such command" in out.stderr
