"""A fast acceptance check for CSV uploads, in two parts: byte statistics gathered while the
upload is streamed to disk (valid UTF-8, no NUL byte, longest line), and Arrow's streaming CSV
reader for the rows. When the file is clean it gives the same Summary as the row-by-row parser
(parsing.summarize); on anything unusual it gives None, and the row-by-row parser gives the exact,
line-numbered answer. Memory stays bounded: both read in blocks."""
import codecs
import csv
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from app.datasets import parsing

BLOCK = 1 << 20  # Arrow's read block: larger is no faster here, and costs memory


@dataclass
class ByteStats:
    """Fed every chunk of an upload, in order."""

    utf8: bool = True
    nul: bool = False
    longest_line: int = 0
    _line: int = 0  # bytes since the last newline
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")())

    def update(self, chunk: bytes) -> None:
        if not self.utf8 or self.nul:
            return  # not text: the row-by-row parser will say why
        if not (chunk.isascii() and self._decoder.getstate()[0] == b""):
            try:
                self._decoder.decode(chunk)
            except UnicodeDecodeError:
                self.utf8 = False
                return
        if b"\x00" in chunk:
            self.nul = True
            return
        ends = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
        if len(ends) == 0:
            self._line += len(chunk)
        else:
            gaps = np.diff(ends)
            self.longest_line = max(self.longest_line, self._line + int(ends[0]) + 1,
                                    int(gaps.max()) if len(gaps) else 0)
            self._line = len(chunk) - int(ends[-1]) - 1
        self.longest_line = max(self.longest_line, self._line)

    def finish(self) -> None:
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            self.utf8 = False

    def clean(self, limits: parsing.Limits) -> bool:
        return self.utf8 and not self.nul and self.longest_line <= parsing.max_line_bytes(limits)


def summarize(path: Path, stats: ByteStats, text_column: str, label_column: str,
              limits: parsing.Limits) -> parsing.Summary | None:
    """The file's Summary when it is clean, else None (then ask parsing.summarize)."""
    if not stats.clean(limits):
        return None
    with open(path, encoding="utf-8-sig", newline="") as f:
        header_line = f.readline()
    delim = parsing._delimiter(header_line.rstrip("\r\n"), (text_column, label_column))
    header = [h.strip() for h in next(csv.reader([header_line], delimiter=delim), [])]
    if text_column not in header or label_column not in header or len(set(header)) != len(header):
        return None
    counts, n = Counter(), 0
    try:
        reader = pacsv.open_csv(
            pa.OSFile(str(path)),  # plain reads: a memory map would count the file as our RSS
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1, block_size=BLOCK,
                                           use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delim, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                include_columns=[text_column, label_column],
                column_types={text_column: pa.string(), label_column: pa.string()},
                strings_can_be_null=False, quoted_strings_can_be_null=False))
        for batch in reader:
            text, label = batch.column(text_column), pc.utf8_trim_whitespace(batch.column(label_column))
            lengths = pc.utf8_length(text)  # (texts are scanned, never copied: they can be long)
            if ((pc.min(lengths).as_py() or 0) == 0 or pc.any(pc.utf8_is_space(text)).as_py()
                    or (pc.min(pc.utf8_length(label)).as_py() or 0) == 0):
                return None  # a blank row, or a row with a missing value: the parser decides
            if (pc.max(lengths).as_py() or 0) > limits.max_text_chars:
                return None
            n += batch.num_rows
            for item in pc.value_counts(label).to_pylist():
                norm = parsing.normalize_label(item["values"])  # as the parser (and worker) read it
                if not norm or len(norm) > limits.max_label_chars:
                    return None  # the parser names the line
                counts[norm] += item["counts"]
            if n > limits.max_rows or len(counts) > limits.max_labels:
                return None
    except (pa.ArrowInvalid, pa.ArrowException, OSError):
        return None  # ragged rows, odd quoting…: the row-by-row parser names the line
    if n == 0 or len(counts) < 2:
        return None
    return parsing.Summary(num_examples=n, class_counts=counts)


def warm_up() -> None:
    """Run a tiny file through the fast path: Arrow's one-time allocations (thread pools, the
    allocator's arenas) then happen at startup, not during the first upload."""
    with tempfile.NamedTemporaryFile(suffix=".csv") as f:
        f.write(b"text,label\na,x\nb,y\n")
        f.flush()
        stats = ByteStats()
        stats.update(b"text,label\na,x\nb,y\n")
        stats.finish()
        summarize(Path(f.name), stats, "text", "label", parsing.Limits())
