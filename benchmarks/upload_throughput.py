"""A 1 GB CSV upload that is accepted: how fast it streams in (to the 201, validation included)
and how much the API's memory grows, against a real `adapt-serve --no-worker` process.

    .venv/bin/python benchmarks/upload_throughput.py [--send-mb 1024]

The CSV (two labels, ~1.1 KB reviews: 1 GB is under the default 1,000,000-row limit) is sent with chunked transfer encoding on loopback. The ratio
printed is MB/s against the 200 MB/s target; the API's RSS (API process and children) is sampled
every 50 ms. For comparison it also times writing the same bytes to a file in this process (the
disk's own speed here).
"""
import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upload_limit import api_process, sample_rss, send_chunked  # noqa: E402

ROWS = b"".join(b"\"" + (b"a long review of the film, " * 42) + b"\"," + label + b"\r\n"
                for label in (b"fresh", b"rotten"))


def disk_speed(total: int, directory: Path) -> float:
    block, path = ROWS * ((1 << 20) // len(ROWS)), directory / "disk-probe"
    t0 = time.time()
    with open(path, "wb") as fh:
        for _ in range(total // len(block)):
            fh.write(block)
        fh.flush()
        os.fsync(fh.fileno())
    seconds = time.time() - t0
    path.unlink()
    return total / seconds / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--send-mb", type=int, default=1024)
    args = p.parse_args()
    with api_process({"ADAPT_MAX_UPLOAD_BYTES": str((args.send_mb + 64) << 20)}) as (
            port, proc, data_dir):
        rss, stop = [], threading.Event()
        sampler = threading.Thread(target=sample_rss, args=(proc.pid, rss, stop), daemon=True)
        sampler.start()
        time.sleep(0.3)
        baseline = rss[-1]
        status, sent, seconds, reply = send_chunked(port, args.send_mb << 20, rows=ROWS)
        stop.set()
        sampler.join()
        if status != 201:
            raise SystemExit(f"upload answered {status}: {reply[-500:]}")
        disk = disk_speed(args.send_mb << 20, data_dir)
        rate = sent / seconds / 1e6
        print(f"{sent / 1e6:.0f} MB CSV accepted (201) in {seconds:.1f}s: {rate:.0f} MB/s → "
              f"{rate / 200:.2f}× the 200 MB/s target; API RSS peak growth "
              f"{(max(rss) - baseline) / 2**20:.1f} MiB (target < 64); this disk alone "
              f"{disk:.0f} MB/s")


if __name__ == "__main__":
    main()
