"""`adapt-serve --api-workers 2`: each API process counts its own requests, and /metrics — which
ever process answers it — adds up what both counted."""
import json
import os
import signal
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from helpers import ROOT, wait_healthy
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families


def processes_that_served(directory: Path, route: str) -> set[str]:
    """The pids whose counter file holds requests for `route`."""
    pids = set()
    for path in directory.glob("counter_*.db"):
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            _family, name, labels, _help = json.loads(key)
            if name == "adapt_http_requests_total" and labels.get("route") == route and value:
                pids.add(path.stem.split("_", 1)[1])
    return pids


def requests_counted(base: str, route: str) -> float:
    text = httpx.get(f"{base}/metrics").text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == "adapt_http_requests_total" and s.labels.get("route") == route
               and s.labels.get("status") == "200")


def test_metrics_add_up_across_api_processes(environment):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "app.serve", "--no-worker", "--api-workers",
                             "2", "--port", str(port)], cwd=ROOT, env=dict(os.environ),
                            start_new_session=True)
    base, directory = f"http://127.0.0.1:{port}", environment.data_dir / "prometheus"

    def one(_) -> int:  # a connection of its own each: the two processes share the accepts
        return httpx.get(f"{base}/v1/jobs?limit=1", headers={"Connection": "close"}).status_code

    try:
        wait_healthy(base, tries=600)
        served = 0
        with ThreadPoolExecutor(8) as pool:
            for _ in range(25):
                assert set(pool.map(one, range(40))) == {200}
                served += 40
                if len(processes_that_served(directory, "/v1/jobs")) == 2:
                    break
        assert len(processes_that_served(directory, "/v1/jobs")) == 2
        for _ in range(4):  # each scrape may be answered by either process
            assert requests_counted(base, "/v1/jobs") == served
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
