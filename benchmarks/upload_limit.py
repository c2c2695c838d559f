"""A 2 GB upload against a 1 GB limit: refused with 413 as the limit is crossed, the API's memory
flat, nothing left on disk. Measured against a real `adapt-serve --no-worker` process.

    .venv/bin/python benchmarks/upload_limit.py [--limit-mb 1024] [--send-mb 2048]

The body is sent with chunked transfer encoding (no Content-Length, so the server can't refuse it
up front): the refusal has to come from counting the stream. The API's RSS is sampled every 50 ms.
"""
import argparse
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_rss(pid: int, out: list, stop: threading.Event) -> None:
    proc = psutil.Process(pid)
    while not stop.is_set():
        out.append(sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]))
        time.sleep(0.05)


ROW = b"a review that goes on and on about the film," + b"x" * 20 + b",fresh\r\n"


def send_chunked(port: int, total: int, chunk: int = 1 << 20,
                 rows: bytes = ROW) -> tuple[int, int, float, str]:
    """Stream a multipart upload of about `total` bytes of CSV made of `rows` repeated; returns
    (status, bytes sent, seconds to the answer, answer)."""
    boundary = "adaptlimitboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"big.csv\"\r\nContent-Type: text/csv\r\n\r\ntext,label\r\n").encode()
    block = rows * max(chunk // len(rows), 1)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall((f"POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                  f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode())
    sent, t0 = 0, time.time()
    try:
        for piece in [head] + [block] * (total // len(block)):
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            sent += len(piece)
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered before the body ended
        else:
            tail = f"\r\n--{boundary}--\r\n".encode()
            sock.sendall(f"{len(tail):x}\r\n".encode() + tail + b"\r\n0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    reply = sock.recv(65536).decode(errors="replace")
    seconds = time.time() - t0
    sock.close()
    return int(reply.split()[1]) if reply.startswith("HTTP/") else -1, sent, seconds, reply


@contextlib.contextmanager
def api_process(env: dict):
    """Yield (port, process, data dir) of an `adapt-serve --no-worker` on a temporary data
    directory (uploads spooled under it too); stop it on exit."""
    data_dir = Path(tempfile.mkdtemp(prefix="adapt-upload-"))
    port = free_port()
    (data_dir / "spool").mkdir()
    env = {**os.environ, "ADAPT_DATA_DIR": str(data_dir), "ADAPT_AUTH": "off",
           "TMPDIR": str(data_dir / "spool"), **env}
    proc = subprocess.Popen([sys.executable, "-m", "app.serve", "--no-worker", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield port, proc, data_dir
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--limit-mb", type=int, default=1024)
    p.add_argument("--send-mb", type=int, default=2048)
    args = p.parse_args()
    with api_process({"ADAPT_MAX_UPLOAD_BYTES": str(args.limit_mb << 20)}) as (port, proc,
                                                                                data_dir):
        rss, stop = [], threading.Event()
        sampler = threading.Thread(target=sample_rss, args=(proc.pid, rss, stop), daemon=True)
        sampler.start()
        time.sleep(0.3)
        baseline = rss[-1]
        status, sent, seconds, _ = send_chunked(port, args.send_mb << 20)
        time.sleep(0.5)
        stop.set()
        sampler.join()
        left = [f for f in data_dir.rglob("*") if f.is_file() and f.suffix != ".db"
                and not f.name.endswith(("-wal", "-shm"))]
        print(f"limit {args.limit_mb} MiB, body {args.send_mb} MiB (chunked): status {status} "
              f"after {sent / 2**20:.0f} MiB sent in {seconds:.1f}s "
              f"({sent / 2**20 / seconds:.0f} MiB/s); API RSS peak growth "
              f"{(max(rss) - baseline) / 2**20:.1f} MiB; files left: {len(left)}")


if __name__ == "__main__":
    main()
