"""The Rotten Tomatoes transfer set (unlabelled.csv) that benchmarks/compress.py distils through:
held-out figures mean something only if none of its reviews is a held-out one."""
import csv
import re

from conftest import FIXTURES

RT = FIXTURES / "rotten_tomatoes"


def texts(name: str) -> list[str]:
    with open(RT / name, newline="", encoding="utf-8") as f:
        return [r["text"] for r in csv.DictReader(f)]


def loose(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", text.lower())


def test_the_unlabelled_reviews_are_unlabelled_and_none_is_a_training_or_heldout_one():
    with open(RT / "unlabelled.csv", newline="", encoding="utf-8") as f:
        assert next(csv.reader(f)) == ["text"]
    unlabelled = texts("unlabelled.csv")
    assert len(unlabelled) == 7888 == len(set(unlabelled)) and all(unlabelled)
    known = {loose(t) for t in texts("train.csv") + texts("heldout.csv")}
    assert not {loose(t) for t in unlabelled} & known
