"""Helpers shared by the tests."""
import time


def wait_for_job(client, job_id: str, timeout: float = 180, until=None) -> dict:
    """Poll the job until it has finished (or `until(job)` holds)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if (until or (lambda j: j["status"] in ("succeeded", "failed", "cancelled")))(job):
            return job
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s: {job}")


def toy_csv(n: int = 120, seed: int = 0) -> bytes:
    """A separable two-class text dataset: the class is in the words."""
    import random

    rng = random.Random(seed)
    pos = ["great", "wonderful", "brilliant", "moving", "superb", "delightful"]
    neg = ["awful", "boring", "dull", "terrible", "tedious", "lifeless"]
    rows = ["text,label"]
    for i in range(n):
        words, label = (pos, "good") if i % 2 else (neg, "bad")
        rows.append(f"{' '.join(rng.choices(words, k=4))} film,{label}")
    return ("\n".join(rows) + "\n").encode()

