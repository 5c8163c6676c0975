"""The quarantine record, file, settings and error (no TFX: runs in a second). The executor
base runs for real in tests/components/test_quarantine.py."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys

import pytest

from components import quarantine
from components.quarantine import (
    CappedLines,
    QuarantinedRow,
    QuarantineSettings,
    TooManyBadRowsError,
)


def test_the_module_does_not_import_tfx_beam_or_tensorflow():
    code = (
        "import sys, components.quarantine; "
        "print(sorted({'tfx', 'apache_beam', 'tensorflow'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "raw",
    [b"", b"plain,1", "café".encode(), b"caf\xff ol", b"a\\x41 literal", b"\\\\\xfe\\", bytes(range(256))],
)
def test_raw_bytes_round_trip_through_readable_text(raw: bytes):
    text = quarantine.escape_raw(raw)
    assert quarantine.unescape_raw(text) == raw
    assert text.isprintable() or "\n" in text or "\t" in text or raw == bytes(range(256))


def test_escaped_text_is_readable():
    assert quarantine.escape_raw("é\\".encode() + b"\xff") == "é\\\\\\xff"


def test_rows_describe_themselves_and_round_trip_through_json_lines_sorted():
    rows = [
        QuarantinedRow("b.csv", 2, "3 columns, the header has 2", b"a,b,c"),
        QuarantinedRow("a.json", 40, "answers: empty", b'{"id": "q"}',
                       position="data[10].paragraphs[0].qas[0] (id q)"),
        QuarantinedRow("a.json", 40, "question: missing", b"{}", position="data[2].paragraphs[0].qas[1]"),
        QuarantinedRow("a.csv", 10, "not UTF-8: byte 0xff at column 4", b"caf\xff", truncated=True),
        QuarantinedRow("a.csv", None, "no line", b""),
    ]
    assert rows[0].describe() == "b.csv:2: 3 columns, the header has 2"
    assert rows[1].describe() == "a.json:40: data[10].paragraphs[0].qas[0] (id q): answers: empty"
    assert rows[4].describe() == "a.csv: no line"
    stream = io.BytesIO()
    assert quarantine.write_quarantine(rows, stream) == 5
    lines = stream.getvalue().decode("utf-8").splitlines()
    assert json.loads(lines[1]) == {
        "file": "a.csv", "line": 10, "position": None, "reason": "not UTF-8: byte 0xff at column 4",
        "raw": "caf\\xff", "truncated": True,
    }
    stream.seek(0)
    # File, line, then positions with their indices compared as numbers.
    assert list(quarantine.read_quarantine(stream)) == [rows[4], rows[3], rows[2], rows[1], rows[0]]


def test_the_quarantine_file_sits_beside_the_examples_artifact():
    assert quarantine.quarantine_path("/root/CsvExampleGen/examples/7") == (
        "/root/CsvExampleGen/quarantine/7.jsonl")
    assert quarantine.quarantine_path("gs://b/p/SquadExampleGen/examples/12/") == (
        "gs://b/p/SquadExampleGen/quarantine/12.jsonl")
    assert quarantine.quarantine_path("/tmp/out") == "/tmp/out.quarantine.jsonl"


def test_utf8_problem_names_the_byte_and_its_column():
    assert quarantine.utf8_problem("ok é".encode()) is None
    assert quarantine.utf8_problem("é\xff".encode() + b"\xff") is not None
    assert quarantine.utf8_problem(b"ab\xffc") == "not UTF-8: byte 0xff at column 3"
    assert quarantine.utf8_problem("é".encode() + b"\xc3", 4) == "not UTF-8: byte 0xc3 at column 2"
    assert quarantine.utf8_problem(b"a\nbc\xfe", 4) == "not UTF-8: byte 0xfe at line 5, column 3"


def test_settings_are_checked_and_split_from_a_custom_config():
    settings, rest = QuarantineSettings.split_dict(
        {"max_bad_fraction": 0.01, "max_field_bytes": 5000.0, "entity_types": ["PER"]})
    assert settings == QuarantineSettings(0.01, 5000)
    assert rest == {"entity_types": ["PER"]}
    assert QuarantineSettings.split_dict({})[0] == QuarantineSettings(0.0, 100_000)
    for bad in ({"max_bad_fraction": 1.0}, {"max_bad_fraction": -0.1}, {"max_field_bytes": 0},
                {"max_field_bytes": 1.5}, {"max_bad_fraction": True}):
        with pytest.raises(ValueError):
            QuarantineSettings(**bad)


def test_the_threshold_is_a_strict_upper_bound_on_the_bad_fraction():
    strict = QuarantineSettings()
    assert not strict.too_many(100, 0)
    assert strict.too_many(100, 1)
    assert not strict.too_many(0, 0)
    lenient = QuarantineSettings(max_bad_fraction=0.02)
    assert not lenient.too_many(100, 2)
    assert lenient.too_many(100, 3)


def test_too_many_bad_rows_error_names_the_file_the_counts_and_the_first_five():
    rows = [QuarantinedRow("/d/train.csv", line, "3 columns, the header has 2") for line in range(2, 9)]
    error = TooManyBadRowsError(1000, 7, 0.001, "/root/CsvExampleGen/quarantine/3.jsonl", rows)
    message = str(error).splitlines()
    assert message[0] == error.summary == (
        "7 of 1000 rows read (0.7%) were quarantined, over data.max_bad_fraction 0.001 (0.1%); "
        "all are in /root/CsvExampleGen/quarantine/3.jsonl; the first 5:"
    )
    assert message[1:6] == [f"  /d/train.csv:{line}: 3 columns, the header has 2" for line in range(2, 7)]
    assert message[6] == "  ... and 2 more"
    copied = pickle.loads(pickle.dumps(error))  # errors may cross process boundaries
    assert (str(copied), copied.rows_quarantined, copied.first_rows) == (str(error), 7, rows[:5])
    single = TooManyBadRowsError(3, 1, 0.0, "q.jsonl", rows[:1])
    assert str(single) == (
        "1 of 3 rows read (33.3333%) were quarantined, over data.max_bad_fraction 0 (0%); "
        "all are in q.jsonl:\n  /d/train.csv:2: 3 columns, the header has 2"
    )


def test_bad_rows_error_for_tools_lists_the_first_ten():
    class FormatError(quarantine.BadRowsError):
        source = "the test input"

    rows = [QuarantinedRow("x", line, "bad") for line in range(12)]
    message = str(FormatError(rows)).splitlines()
    assert message[0] == "12 bad rows in the test input; the first 10:"
    assert message[-1] == "  ... and 2 more"
    assert str(FormatError(rows[:1])) == "1 bad row in the test input:\n  x:0: bad"


@pytest.mark.parametrize("chunk_size", [1, 2, 5, 1 << 16])
def test_capped_lines_cut_long_lines_and_keep_their_size(chunk_size: int):
    data = b"short\r\n" + b"x" * 25 + b"\r\n\n" + b"y" * 10 + b"\nlast\r"
    lines = list(CappedLines(io.BytesIO(data), max_bytes=10, chunk_size=chunk_size))
    assert lines == [(b"short", 5), (b"x" * 10, 25), (b"", 0), (b"y" * 10, 10), (b"last", 4)]
    assert list(CappedLines(io.BytesIO(b""), 10)) == []
    assert list(CappedLines(io.BytesIO(b"a\n"), 10)) == [(b"a", 1)]


def test_the_executor_base_is_built_lazily():
    code = (
        "import sys, components.quarantine as q; "
        "assert 'tfx' not in sys.modules; base = q.ExampleGenExecutor; "
        "from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor; "
        "assert issubclass(base, BaseExampleGenExecutor) and q.ExampleGenExecutor is base; "
        "import pickle; assert pickle.loads(pickle.dumps(base)) is base; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("ok")
