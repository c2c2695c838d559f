"""Quickstart: fine-tune MiniLM on movie reviews with the adapt Python SDK, follow it, predict.

Start the service first (`adapt serve`, or `adapt-serve`), then run:

    python examples/quickstart.py

Only the SDK is used. The reviews are Rotten Tomatoes snippets shipped as a test fixture; see
tests/fixtures/rotten_tomatoes/README.md for their source and licence. The cells (`# %%`) run
one by one in an editor that knows them (VS Code, PyCharm, Jupyter with jupytext).
"""
# %% Connect: ADAPT_URL and ADAPT_API_KEY, else the embedded service on http://127.0.0.1:8000.
import csv
from pathlib import Path

from adapt import Client, JobEvent, JobProgress

client = Client()
DATA = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "rotten_tomatoes"
print("base models:", ", ".join(m.id for m in client.base_models.list()))

# %% Upload the training reviews: streamed from disk, validated before the call returns.
train = client.datasets.upload(DATA / "train.csv", name="rotten-tomatoes")
print(f"dataset {train.id}: {train.num_examples} reviews, {train.class_counts}")

# %% Start a job: a new classification head on the frozen MiniLM encoder (minutes on a CPU).
job = client.jobs.create("minilm-l6-v2", train.id, method="head",
                         hyperparameters={"epochs": 4}, suffix="reviews", seed=7)
print(f"job {job.id} {job.status}: {job.hyperparameters}")

# %% Follow it live: events as they are logged, and the progress every quarter of the way.
quarter = 0
for item in job.stream(progress=True):
    if isinstance(item, JobEvent):
        print(f"  [{item.type}] {item.message}")
    elif isinstance(item, JobProgress) and item.total_steps:
        if item.step * 4 >= (quarter + 1) * item.total_steps:
            quarter = item.step * 4 // item.total_steps
            print(f"  {item.step}/{item.total_steps} steps, loss {item.train_loss}, "
                  f"ETA {item.eta_seconds}s")
job = job.wait()
print(f"job {job.status}: model {job.model}, validation {job.metrics}")

# %% The model's report on the validation reviews the job held out.
report = client.models.evaluation(job.model)
print(f"validation accuracy {report.accuracy:.3f}, macro-F1 {report.macro_f1:.3f}")
for label, scores in report.per_class.items():
    print(f"  {label:<7} precision {scores.precision:.3f} recall {scores.recall:.3f} "
          f"(n={scores.support})")

# %% Predict: two new reviews, then every held-out review (never seen in training).
result = client.models.predict(job.model, ["A moving, beautifully acted film.",
                                           "A tedious mess that never finds its footing."],
                               top_k=2)
for p in result.predictions:
    print(f"  {p.label} ({p.score:.2f})")

with (DATA / "heldout.csv").open(newline="", encoding="utf-8") as f:
    heldout = list(csv.DictReader(f))
correct = 0
for start in range(0, len(heldout), 256):  # at most 256 inputs a request
    batch = heldout[start:start + 256]
    preds = client.models.predict(job.model, [row["text"] for row in batch]).predictions
    correct += sum(p.label == row["label"] for p, row in zip(preds, batch))
print(f"held-out accuracy: {correct / len(heldout):.3f} on {len(heldout)} reviews")
