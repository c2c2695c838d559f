"""The fast CSV path gives exactly the row-by-row parser's summary on clean files, and hands
anything unusual back to it (so refusals keep naming the line)."""
from pathlib import Path

import pytest
from helpers import toy_csv

from app.datasets import fast_csv, parsing

RT = Path(__file__).resolve().parent.parent / "fixtures" / "rotten_tomatoes"


def _both(path: Path, chunk: int = 1 << 16, text="text", label="label", limits=None):
    limits = limits or parsing.Limits()
    stats = fast_csv.ByteStats()
    data = path.read_bytes()
    for i in range(0, len(data), chunk):  # as the upload streams in
        stats.update(data[i:i + chunk])
    stats.finish()
    fast = fast_csv.summarize(path, stats, text, label, limits)
    try:
        slow = parsing.summarize(path, "csv", text, label, limits)
    except parsing.DatasetInvalid as exc:
        slow = exc
    return fast, slow


@pytest.mark.parametrize("name", ["train.csv", "heldout.csv"])
def test_real_reviews_give_the_same_summary(name):
    fast, slow = _both(RT / name, chunk=4093)  # chunks that split lines and characters
    assert fast is not None and fast == slow


@pytest.mark.parametrize("content", [
    b'text;label\n"semi; colon";a\nplain;b\n',                     # another delimiter
    '\ufefftext,label\n"quoted ""x"" and\nnewline",a\nb c,b\n'.encode(),  # BOM, quotes, newline
    b'text,label\n  padded  ,  a  \nx,b\n',                        # labels stripped
    b'id,text,label\n1,a,x\n2,b,y\n3,c,x\n',                       # extra columns
])
def test_clean_variants_agree(tmp_path, content):
    path = tmp_path / "d.csv"
    path.write_bytes(content)
    fast, slow = _both(path)
    assert fast is not None and fast == slow


@pytest.mark.parametrize("content", [
    b"text,label\na,x\n,y\nb,y\n",              # a missing text: the parser names line 3
    b"text,label\na,x\n   ,y\nb,y\n",           # a blank text
    b"text,label\na,x\n\xff\xfe,y\n",            # not UTF-8
    b"text,label\na,x\nb\x00,y\n",               # NUL byte
    b"text,label\na,x\nb,x\n",                   # one class
    b"text,label\na,x,extra\nb\n",               # ragged rows
    b"text,label\na,x\n,,\nb,y\n",               # a blank row (the parser skips it)
])
def test_anything_unusual_goes_to_the_row_by_row_parser(tmp_path, content):
    path = tmp_path / "d.csv"
    path.write_bytes(content)
    fast, _ = _both(path)
    assert fast is None


def test_limits_send_it_to_the_parser(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(toy_csv(50))
    assert _both(path, limits=parsing.Limits(max_rows=10))[0] is None
    assert _both(path, limits=parsing.Limits(max_text_chars=5))[0] is None
    long_line = tmp_path / "long.csv"
    long_line.write_bytes(b"text,label\n" + b"x" * 300_000 + b",a\nb,c\n")
    assert _both(long_line, limits=parsing.Limits(max_text_chars=1000))[0] is None
