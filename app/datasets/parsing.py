"""Text-classification files (CSV with a header row, JSONL): read and validated row by row.

Pure Python, shared by the API (validation before the 201) and the worker (reading for training).
"""
import csv
import json
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAX_REPORTED = 20  # line errors listed in one 422; the message says how many there were in all


@dataclass
class Limits:
    max_rows: int = 1_000_000
    max_text_chars: int = 100_000
    max_labels: int = 1_000
    max_label_chars: int = 100


class DatasetInvalid(Exception):
    """The file can't be used; details name the line (or column) and what is wrong."""

    def __init__(self, message: str, details: list[dict] | None = None, param: str = "file"):
        super().__init__(message)
        self.message, self.details, self.param = message, details or [], param


@dataclass
class Summary:
    num_examples: int = 0
    class_counts: Counter = field(default_factory=Counter)

    @property
    def labels(self) -> list[str]:
        return sorted(self.class_counts)


def sniff_format(filename: str, head: bytes) -> str | None:
    """'csv', 'jsonl', 'zip', or None, from the name first and the first bytes second."""
    name = filename.lower()
    for ext, fmt in ((".csv", "csv"), (".jsonl", "jsonl"), (".ndjson", "jsonl"),
                     (".json", "jsonl"), (".zip", "zip"), (".tsv", None)):
        if name.endswith(ext):
            return fmt
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"{"):
        return "jsonl"
    if stripped:
        return "csv"
    return None


def max_line_bytes(limits: Limits) -> int:
    """The longest physical line read: a text at the limit, 4 bytes a character, plus slack."""
    return 4 * limits.max_text_chars + (1 << 16)


def check_utf8(path: Path, limits: Limits | None = None) -> None:
    """Fail with the first line that is not valid UTF-8 text (binary files land here too), holds a
    NUL byte, or is too long to be one example (read in bounded pieces: memory stays small)."""
    cap = max_line_bytes(limits or Limits())
    with open(path, "rb") as f:
        lineno = 0
        while raw := f.readline(cap + 1):
            lineno += 1
            if len(raw) > cap:
                raise DatasetInvalid(f"Line {lineno} is longer than {cap} bytes.",
                                     [{"line": lineno, "message": "line too long"}])
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetInvalid(
                    f"The file is not valid UTF-8 text (line {lineno}, byte {exc.start + 1}); "
                    "save it as UTF-8 and upload it again.",
                    [{"line": lineno, "message": "invalid UTF-8"}]) from None
            if b"\x00" in raw:
                raise DatasetInvalid(f"Line {lineno} contains a NUL byte: this is not a text file.",
                                     [{"line": lineno, "message": "NUL byte"}])


DELIMITERS = (",", ";", "\t", "|")


def _delimiter(header_line: str, wanted: tuple[str, str]) -> str:
    """The delimiter that makes the header hold both wanted columns (comma when none does)."""
    for delim in DELIMITERS:
        cols = [c.strip().strip('"') for c in header_line.split(delim)]
        if all(w in cols for w in wanted):
            return delim
    return ","


def normalize_label(value: str) -> str:
    """The label as it is stored and trained on: NFKC (so full-width, ligature and compatibility
    forms fold to one spelling), format characters (zero-width space/joiners, BOM, bidi marks)
    removed, surrounding whitespace stripped. Upload and worker both read labels through this."""
    text = unicodedata.normalize("NFKC", value)
    if not text.isascii():
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return text.strip()


def _label(value) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    return normalize_label(str(value)) or None


# Look-alikes of Latin letters and digits from Cyrillic and Greek (the confusables that NFKC keeps
# apart), for spotting labels that read the same but are different classes.
_SKELETON = str.maketrans({
    **dict(zip("аеорсухіјѕԁһԛԝӏАВЕКМНОРСТХІЈЅУ", "aeopcyxijsdhqwlABEKMHOPCTXIJSY")),
    **dict(zip("αορνιϲκχτυΑΒΕΖΗΙΚΜΝΟΡΤΥΧ", "aopvickxtuABEZHIKMNOPTYX")),
})


def look_alike_groups(labels: list[str]) -> list[list[str]]:
    """Groups of two or more labels that differ only in look-alike characters."""
    groups: dict[str, list[str]] = {}
    for label in labels:
        groups.setdefault(label.translate(_SKELETON), []).append(label)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def label_warnings(labels: list[str]) -> list[str]:
    return [f"Labels {', '.join(repr(x) for x in group)} look alike but are different classes "
            "(they differ in look-alike characters, e.g. a Cyrillic or Greek letter); fix the "
            "file if they are meant to be one class." for group in look_alike_groups(labels)]


def _csv_rows(path: Path, text_column: str, label_column: str) -> Iterator[tuple[int, object, object]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        delim = _delimiter(f.readline().rstrip("\r\n"), (text_column, label_column))
        f.seek(0)
        reader = csv.reader(f, delimiter=delim)
        try:
            header = next(reader)
        except StopIteration:
            raise DatasetInvalid("The file is empty.") from None
        header = [h.strip() for h in header]
        for param, col in (("text_column", text_column), ("label_column", label_column)):
            if col not in header:
                raise DatasetInvalid(
                    f"The CSV header has no {col!r} column (columns: {', '.join(header)}). "
                    f"Name the column with {param}.", [{"line": 1, "message": f"no column {col!r}"}],
                    param=param)
        ti, li = header.index(text_column), header.index(label_column)
        line = reader.line_num
        for row in reader:
            start, line = line + 1, reader.line_num
            if not row or all(not c.strip() for c in row):
                continue
            yield (start, row[ti] if ti < len(row) else None, row[li] if li < len(row) else None)


def _jsonl_rows(path: Path, text_column: str, label_column: str) -> Iterator[tuple[int, object, object]]:
    with open(path, encoding="utf-8-sig") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, RecursionError, ValueError) as exc:
                yield lineno, _RowError(f"not valid JSON ({exc.__class__.__name__})"), None
                continue
            if not isinstance(obj, dict):
                yield lineno, _RowError("each line must be a JSON object"), None
                continue
            yield lineno, obj.get(text_column), obj.get(label_column)


class _RowError(str):
    pass


def iter_examples(path: Path, fmt: str, text_column: str, label_column: str,
                  limits: Limits | None = None) -> Iterator[tuple[int, str, str]]:
    """Yield (line, text, label) for every valid row; raise DatasetInvalid listing bad lines."""
    limits = limits or Limits()
    check_utf8(path, limits)
    csv.field_size_limit(max_line_bytes(limits))  # our own check names the row
    rows = _csv_rows if fmt == "csv" else _jsonl_rows
    errors, n_errors, n = [], 0, 0
    try:
        for line, text, label in rows(path, text_column, label_column):
            problem = _row_problem(text, label, limits)
            if problem:
                n_errors += 1
                if len(errors) < MAX_REPORTED:
                    errors.append({"line": line, "message": problem})
                continue
            n += 1
            if n > limits.max_rows:
                raise DatasetInvalid(f"The dataset has more than {limits.max_rows} rows.",
                                     [{"line": line, "message": "row limit reached"}])
            if not errors:
                yield line, text.strip(), _label(label)
    except csv.Error as exc:
        raise DatasetInvalid(f"The CSV could not be parsed: {exc}.") from None
    if errors:
        raise DatasetInvalid(f"{n_errors} row(s) are invalid; the first is line "
                             f"{errors[0]['line']}: {errors[0]['message']}.", errors)


def _row_problem(text, label, limits: Limits) -> str | None:
    if isinstance(text, _RowError):
        return str(text)
    if not isinstance(text, str):
        return "missing text" if text is None else "text must be a string"
    if not text.strip():
        return "empty text"
    if len(text) > limits.max_text_chars:
        return f"text longer than {limits.max_text_chars} characters"
    norm = _label(label)
    if norm is None:
        return "missing label"
    if len(norm) > limits.max_label_chars:
        return f"label longer than {limits.max_label_chars} characters"
    return None


def summarize(path: Path, fmt: str, text_column: str, label_column: str,
              limits: Limits | None = None) -> Summary:
    """Validate the whole file and count examples per class; raise DatasetInvalid if unusable."""
    limits = limits or Limits()
    summary = Summary()
    for _, _, label in iter_examples(path, fmt, text_column, label_column, limits):
        summary.num_examples += 1
        summary.class_counts[label] += 1
        if len(summary.class_counts) > limits.max_labels:
            raise DatasetInvalid(f"The dataset has more than {limits.max_labels} distinct labels.")
    if summary.num_examples == 0:
        raise DatasetInvalid("The file has no examples.")
    if len(summary.class_counts) < 2:
        only = next(iter(summary.class_counts))
        raise DatasetInvalid(f"Every example has the label {only!r}: classification needs at "
                             "least 2 classes.", param="label_column")
    return summary


def read_examples(path: Path, fmt: str, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    """(texts, labels) of a stored dataset, for training."""
    texts, labels = [], []
    for _, text, label in iter_examples(path, fmt, text_column, label_column,
                                        Limits(max_rows=10**9, max_text_chars=10**9,
                                               max_label_chars=10**9)):
        texts.append(text)
        labels.append(label)
    return texts, labels
