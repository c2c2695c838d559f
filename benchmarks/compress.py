"""What compression costs on held-out data, through the service: a MiniLM teacher fine-tuned on
tests/fixtures/rotten_tomatoes (a seeded subsample of train.csv's 3,200 reviews: 1,600 by
default, to keep the run short on two busy cores), then

  - for each --student-layers depth (default 1 and 2 of the teacher's 6 encoder layers): a
    distilled student (method distill, student_layers N), and the same student trained WITHOUT the
    teacher: the same layers and the same schedule with alpha 0 (the loss is then the labels'
    cross-entropy alone: plain fine-tuning),
  - with --augment-copies N, a third student: distilled as the first, its training set grown by
    N altered copies of each review labelled by the teacher alone (hyperparameter
    augment_copies; Tang et al. 2019), for --augment-epochs,
  - with --transfer-set, a student distilled with the transfer set: tests/fixtures/rotten_tomatoes/
    unlabelled.csv's 7,888 reviews (in neither train.csv nor heldout.csv), labelled by the teacher
    alone (job field transfer_dataset; Hinton et al. 2015),
  - the teacher pruned to half its FFN width (POST /v1/models/{id}/prune, ffn 0.5) and retrained
    for --prune-epochs (default 2),

each downloaded and measured the same way (app/ml/measure.py) on the 1,663 held-out reviews
(heldout.csv, never trained on): parameters, weight-file size, forward latency at batch 1 on this
CPU (median over the first 200 held-out texts), held-out accuracy; deltas against the teacher.

    .venv/bin/python benchmarks/compress.py [--epochs 2] [--max-length 48] [--train-examples 1600]
                                            [--student-layers 1,2]
    # a bigger teacher, distilled into the whole of a smaller base model:
    .venv/bin/python benchmarks/compress.py --teacher-base mpnet-base-v2 --teacher-method head \
        --teacher-epochs 10 --student-layers 0 --student-base minilm-l6-v2 --prune-epochs 0
"""
import argparse
import csv
import io
import json
import random
import sys
import tempfile
import time
import urllib.request
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _service import RT, call, run_job, serve, upload  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from app.ml.measure import figures  # noqa: E402


def wait(base: str, job: dict) -> dict:
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(2)
        job = call(base, f"/v1/jobs/{job['id']}")
    if job["status"] != "succeeded":
        raise SystemExit(f"job {job['id']} {job['status']}: {job['error']}")
    return job


def download(base: str, model_id: str, out: Path) -> Path:
    ckpt = call(base, f"/v1/models/{model_id}")["checkpoint"]
    with urllib.request.urlopen(f"{base}/v1/checkpoints/{ckpt}/content", timeout=600) as res:
        zipfile.ZipFile(io.BytesIO(res.read())).extractall(out / model_id)
    return out / model_id


def heldout() -> tuple[list[str], list[str]]:
    with open(RT / "heldout.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def measure(ckpt: Path, texts: list[str], labels: list[str]) -> dict:
    names = json.loads((ckpt / "adapt.json").read_text())["labels"]
    return figures(ckpt, texts, [names.index(y) for y in labels], latency_examples=200,
                   max_eval=len(texts))


def subsample(n: int, out: Path) -> Path:
    """The first n rows of a seeded shuffle of train.csv (all of it when n is 0 or more)."""
    with open(RT / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    random.Random(0).shuffle(rows)
    rows = rows[:n] if 0 < n < len(rows) else rows
    path = out / "train.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["text", "label"])
        w.writeheader()
        w.writerows(rows)
    return path


def unlabelled(out: Path) -> Path:
    """unlabelled.csv with a label column the service's datasets need: x / y in turn, never read
    (a distill job reads a transfer set's texts only)."""
    with open(RT / "unlabelled.csv", newline="") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    path = out / "unlabelled.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([t, "xy"[i % 2]] for i, t in enumerate(texts))
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=48)
    ap.add_argument("--student-layers", default="1,2",
                    help="comma-separated student depths, each trained with and without the "
                         "teacher; 0 = the whole --student-base model (no layers copied)")
    ap.add_argument("--teacher-base", default="minilm-l6-v2")
    ap.add_argument("--teacher-method", default="full", help="full, head, partial or lora")
    ap.add_argument("--teacher-epochs", type=int, default=None, help="default: --epochs")
    ap.add_argument("--student-base", default="minilm-l6-v2",
                    help="the students' base model (for depths > 0: the teacher's own)")
    ap.add_argument("--alpha", type=float, default=0.7)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--prune-epochs", type=int, default=2,
                    help="retraining epochs after pruning (0: no pruning run)")
    ap.add_argument("--augment-copies", type=int, default=0,
                    help="N > 0: also a distilled student with N augmented copies of each text")
    ap.add_argument("--augment-epochs", type=int, default=None, help="default: --epochs")
    ap.add_argument("--feature-weight", type=float, default=0.0,
                    help="B > 0: also a distilled student that learns the teacher's features")
    ap.add_argument("--feature-copies", type=int, default=0,
                    help="augmented copies for the --feature-weight student")
    ap.add_argument("--transfer-set", action="store_true",
                    help="also a distilled student with the transfer set: the 7,888 reviews of "
                         "tests/fixtures/rotten_tomatoes/unlabelled.csv, labelled by the teacher "
                         "(job field transfer_dataset); with --feature-weight it learns the "
                         "teacher's features too")
    ap.add_argument("--variants-only", action="store_true",
                    help="only the --augment-copies / --feature-weight / --transfer-set students "
                         "(no distilled and plain students: their rows are the same with the same "
                         "settings)")
    ap.add_argument("--train-examples", type=int, default=1600,
                    help="a seeded subsample of train.csv's 3,200 (0: all)")
    args = ap.parse_args()
    texts, labels = heldout()
    t_start = time.time()
    hp = {"epochs": args.epochs, "max_length": args.max_length}
    with serve(8766) as base, tempfile.TemporaryDirectory() as tmp:
        ds = upload(base, subsample(args.train_examples, Path(tmp)))["id"]
        common = {"training_dataset": ds, "seed": 0, "validation_split": 0.1}
        transfer = upload(base, unlabelled(Path(tmp)))["id"] if args.transfer_set else None
        teacher = run_job(base, {**common, "base_model": args.teacher_base,
                                 "method": args.teacher_method, "hyperparameters": {
                                     **hp, "epochs": args.teacher_epochs or args.epochs}})
        distill = {**common, "base_model": args.student_base, "method": "distill",
                   "teacher": teacher["model"]}
        students = []  # (depth, distilled job, plain job, [(name, variant job)])
        for depth in [int(d) for d in args.student_layers.split(",")]:
            student_hp = {**hp, "temperature": args.temperature,
                          **({"student_layers": depth} if depth else {})}
            which = f"{depth} teacher layers" if depth else f"{args.student_base} full"
            variants = []
            if args.augment_copies:
                variants.append((f"distilled + {args.augment_copies} augmented copies ({which}, "
                                 f"{args.augment_epochs or args.epochs} ep)", run_job(base, {
                                     **distill, "hyperparameters": {
                                         **student_hp, "alpha": args.alpha,
                                         "augment_copies": args.augment_copies,
                                         "epochs": args.augment_epochs or args.epochs}})))
            if args.transfer_set:
                features = (f", features β={args.feature_weight:g}" if args.feature_weight
                            else "")
                variants.append((f"distilled + transfer set ({which}{features})", run_job(base, {
                    **distill, "transfer_dataset": transfer, "hyperparameters": {
                        **student_hp, "alpha": args.alpha,
                        "feature_weight": args.feature_weight}})))
                if args.variants_only:  # (the features student without it ran before)
                    students.append((depth, None, None, variants))
                    continue
            if args.feature_weight:
                copies = f", {args.feature_copies} copies" if args.feature_copies else ""
                variants.append((f"distilled + features β={args.feature_weight:g} ({which}{copies})",
                                 run_job(base, {**distill, "hyperparameters": {
                                     **student_hp, "alpha": args.alpha,
                                     "feature_weight": args.feature_weight,
                                     "augment_copies": args.feature_copies}})))
            if args.variants_only:
                students.append((depth, None, None, variants))
                continue
            students.append((depth, run_job(base, {**distill, "hyperparameters": {
                **student_hp, "alpha": args.alpha}}), run_job(base, {**distill, "hyperparameters": {
                    **student_hp, "alpha": 0.0}}), variants))
        pruned = wait(base, call(base, f"/v1/models/{teacher['model']}/prune", {
            "target": {"ffn": 0.5}, "retrain_epochs": args.prune_epochs,
            "hyperparameters": {"max_length": args.max_length}})) if args.prune_epochs else None
        train_s = time.time() - t_start
        runs = [(f"teacher: {args.teacher_base} {args.teacher_method}", teacher)]
        if pruned:
            runs.append((f"teacher pruned to half FFN + {args.prune_epochs} epochs", pruned))
        for depth, student, plain, variants in students:
            which = f"{depth} teacher layers" if depth else f"{args.student_base} full"
            if student is not None:
                runs += [(f"distilled student ({which}, T={args.temperature:g}, "
                          f"alpha={args.alpha:g})", student),
                         (f"same student ({which}), no teacher (alpha=0)", plain)]
            runs += variants
        rows = []
        for name, job in runs:
            model = call(base, f"/v1/models/{job['model']}")
            rows.append((name, model, measure(download(base, job["model"], Path(tmp)),
                                              texts, labels)))
    ref = rows[0][2]
    n_train = args.train_examples or 3200
    print(f"held-out: {len(texts)} reviews (tests/fixtures/rotten_tomatoes/heldout.csv); "
          f"training: {n_train:,} of train.csv (validation split 0.1), {args.epochs} epochs, max_length "
          f"{args.max_length}; latency: forward pass at batch 1 on this CPU, median of 200")
    print(f"{'model':48} {'params':>11} {'size MB':>8} {'ms b1':>7} {'speed-up':>8} "
          f"{'accuracy':>8} {'Δ pts':>7}")
    for name, model, f in rows:
        print(f"{name:48} {f['params']:>11,} {f['size_bytes'] / 1e6:>8.1f} "
              f"{f['latency_ms_b1']:>7.2f} {ref['latency_ms_b1'] / f['latency_ms_b1']:>7.2f}× "
              f"{f['accuracy']:>8.4f} {100 * (f['accuracy'] - ref['accuracy']):>+7.2f}")
    print()
    at = 2 if pruned else 1  # the first student's row
    for depth, student, _, variants in students:
        base_rows = 0 if student is None else 2  # (the distilled and plain students')
        plain_f = rows[at + 1][2] if base_rows else None
        for kind, student_f in [("", rows[at][2])] * (base_rows > 0) + [
                (f" ({name.split(' (')[0].removeprefix('distilled + ')})",
                 rows[at + base_rows + k][2]) for k, (name, _) in enumerate(variants)]:
            speedup = ref["latency_ms_b1"] / student_f["latency_ms_b1"]
            lost = 100 * (ref["accuracy"] - student_f["accuracy"])
            vs_plain = ""
            if plain_f is not None:
                gain = 100 * (student_f["accuracy"] - plain_f["accuracy"])
                vs_plain = (f"; distillation vs plain fine-tuning of the same student: "
                            f"{gain:+.2f} points "
                            f"({'distillation wins' if gain > 0 else 'distillation does not win'})")
            print(f"{f'{depth}-layer' if depth else args.student_base} student{kind} vs teacher: "
                  f"{speedup:.2f}× faster at batch 1 (target ≥ 3×: "
                  f"{'met' if speedup >= 3 else 'NOT met'}), {lost:+.2f} points lost (target ≤ 2: "
                  f"{'met' if lost <= 2 else 'NOT met'}){vs_plain}")
        at += base_rows + len(variants)
    if pruned:
        pruned_f = rows[1][2]
        pruned_lost = 100 * (ref["accuracy"] - pruned_f["accuracy"])
        print(f"pruned to half FFN: {pruned_lost:+.2f} points lost (target ≤ 1.5: "
              f"{'met' if pruned_lost <= 1.5 else 'NOT met'}), "
              f"{ref['latency_ms_b1'] / pruned_f['latency_ms_b1']:.2f}× faster")
    print("\nthe service's own record (model.compression, on the job's validation split):")
    for name, model, _ in rows[1:]:
        c = model["compression"] or {}
        print(f"  {name:48} {json.dumps(c.get('delta'))}")
    print(f"\ntraining wall time {train_s / 60:.1f} min; total {(time.time() - t_start) / 60:.1f} min")


if __name__ == "__main__":
    main()
