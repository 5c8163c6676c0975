"""The CSV parser: record splitting with line numbers, and each kind of bad row.

Imports neither TFX, Beam nor TensorFlow, so it runs in a second."""

from __future__ import annotations

import io
import subprocess
import sys
import tracemalloc

import pytest

from components.csv_example_gen.csv_rows import CsvConfig, Row, parse_csv
from components.quarantine import QuarantinedRow, split_rows

CONFIG = CsvConfig(label_column="label", num_classes=2)
LIMIT = 100_000


def parse(data: bytes, config: CsvConfig = CONFIG, limit: int = LIMIT, chunk_size: int = 1 << 16):
    """(line, values) of the good rows, and (line, reason) of the bad, of a file's bytes."""
    good, bad = split_rows(parse_csv(io.BytesIO(data), "in.csv", config, limit, chunk_size))
    assert all(isinstance(row, Row) and row.file == "in.csv" for row in good)
    assert all(row.file == "in.csv" for row in bad)
    return [(row.line, row.values) for row in good], [(row.line, row.reason) for row in bad]


def test_the_parser_does_not_import_tfx_beam_or_tensorflow():
    code = (
        "import sys, components.csv_example_gen.csv_rows; "
        "print(sorted({'tfx', 'apache_beam', 'tensorflow'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("chunk_size", [1, 3, 1 << 16])
def test_good_rows_quotes_blank_lines_and_a_quoted_newline_keep_line_numbers(chunk_size: int):
    data = (
        b"\xef\xbb\xbfsentence,label\n"  # a byte-order mark before the header
        b"a fine film,1\n"
        b'"a film, with a comma",0\n'
        b"\n"
        b"   \n"
        b'"two\nlines, ""quoted""",1\n'
        b'he said "no",0\n'  # a quote inside an unquoted field is kept
        b"caf\xc3\xa9,1"  # no final line break
    )
    good, bad = parse(data, chunk_size=chunk_size)
    assert bad == []
    assert good == [
        (2, {"sentence": b"a fine film", "label": 1}),
        (3, {"sentence": b"a film, with a comma", "label": 0}),
        (6, {"sentence": b'two\nlines, "quoted"', "label": 1}),
        (8, {"sentence": b'he said "no"', "label": 0}),
        (9, {"sentence": "café".encode(), "label": 1}),
    ]


def test_crlf_line_endings_are_not_part_of_the_fields():
    data = b'sentence,label\r\nplain,1\r\n"quoted",0\r\n"multi\r\nline",1\r\n\r\nlast,0\r\n'
    good, bad = parse(data)
    assert bad == []
    assert good == [
        (2, {"sentence": b"plain", "label": 1}),
        (3, {"sentence": b"quoted", "label": 0}),
        (4, {"sentence": b"multi\r\nline", "label": 1}),  # inside quotes: data
        (7, {"sentence": b"last", "label": 0}),
    ]


def test_an_empty_text_field_is_left_out_and_an_empty_file_has_no_rows():
    good, bad = parse(b"sentence,second,label\n,,1\n")
    assert (good, bad) == ([(2, {"label": 1})], [])
    assert parse(b"") == ([], [])
    assert parse(b"sentence,label\n") == ([], [])


def _file_with(bad_line: bytes) -> bytes:
    return b"sentence,label\ngood one,1\n" + bad_line + b"\ngood two,0\n"


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"caf\xc3\xa9 and \xff,1", "not UTF-8: byte 0xff at column 10"),
        (b"one,extra,1", "3 columns, the header has 2"),
        (b"no label", "1 column, the header has 2"),
        (b"a label outside,7", "label 7 is outside the 2 classes (0..1)"),
        (b"a negative label,-1", "label -1 is outside the 2 classes (0..1)"),
        (b"not a number,positive", "label 'positive' is not an integer"),
        (b"a fraction,1.0", "label '1.0' is not an integer"),
        (b"no label,", "label is empty, expected an integer"),
        (b'"closed"then text,1', "text after the closing quote of field 1"),
    ],
)
def test_each_bad_row_is_quarantined_with_its_line_and_reason(line: bytes, reason: str):
    items = list(parse_csv(io.BytesIO(_file_with(line)), "in.csv", CONFIG, LIMIT))
    good, bad = split_rows(items)
    assert [(row.line, row.values["sentence"]) for row in good] == [(2, b"good one"), (4, b"good two")]
    assert bad == [QuarantinedRow("in.csv", 3, reason, line)]
    assert bad[0].describe() == f"in.csv:3: {reason}"


def test_a_label_with_spaces_is_an_integer():
    assert parse(_file_with(b"spaced, 1 "))[0][1] == (3, {"sentence": b"spaced", "label": 1})


def test_a_non_utf8_byte_on_a_later_line_of_a_quoted_record_names_that_line():
    _, bad = parse(b'sentence,label\n"first line\nsecond \xfe",1\n')
    assert bad == [(2, "not UTF-8: byte 0xfe at line 3, column 8")]


def test_an_unterminated_quote_in_the_middle_loses_only_its_line():
    data = (
        b"sentence,label\n"
        b"before,1\n"
        b'"never closed,0\n'  # line 3
        b"after one,1\n"
        b'"quoted after",0\n'  # its opening quote "closes" line 3's, then text follows
        b"after two,1\n"
    )
    good, bad = parse(data)
    assert bad == [(3, "unterminated quote in field 1")]
    assert good == [
        (2, {"sentence": b"before", "label": 1}),
        (4, {"sentence": b"after one", "label": 1}),
        (5, {"sentence": b"quoted after", "label": 0}),
        (6, {"sentence": b"after two", "label": 1}),
    ]


def test_an_unterminated_quote_running_to_the_end_of_the_file_loses_only_its_line():
    data = b'sentence,label\nbefore,1\nok,"0\nafter,1\nlast,0\n'
    good, bad = parse(data)
    assert bad == [(3, "unterminated quote in field 2")]
    assert [line for line, _ in good] == [2, 4, 5]
    # On the last line, without a line break after it.
    assert parse(b'sentence,label\nok,1\n"open')[1] == [(3, "unterminated quote in field 1")]


@pytest.mark.parametrize("quoted", [False, True])
def test_a_one_megabyte_field_is_quarantined_with_its_size_and_the_start_of_its_bytes(quoted: bool):
    field = b"x" * 1_048_576
    line = (b'"' + field + b'"' if quoted else field) + b",1"
    items = list(parse_csv(io.BytesIO(_file_with(line)), "in.csv", CONFIG, LIMIT))
    good, bad = split_rows(items)
    assert [row.line for row in good] == [2, 4]
    assert [(row.line, row.reason, row.truncated) for row in bad] == [
        (3, "field 1 is 1048576 bytes, over data.max_field_bytes (100000)", True)
    ]
    assert bad[0].raw == line[:LIMIT]


def test_a_row_over_the_limit_with_small_fields_is_quarantined():
    good, bad = parse(_file_with(b"a" * 60 + b"," + b"1" * 60), limit=100)
    assert bad == [(3, "row is 121 bytes, over data.max_field_bytes (100)")]
    assert [line for line, _ in good] == [2, 4]


def test_an_unterminated_quote_over_the_limit_still_resumes_on_the_next_line():
    # The open quote runs past max_field_bytes before the file ends: the parser goes back
    # (seeks) to the line after the one where it opened.
    rows = b"".join(b"row %d,1\n" % k for k in range(50))
    good, bad = parse(b'sentence,label\n"open,1\n' + rows, limit=64, chunk_size=16)
    assert bad == [(2, "unterminated quote in field 1")]
    assert [line for line, _ in good] == list(range(3, 53))


def test_a_huge_line_is_read_in_bounded_memory():
    field = b"y" * (20 << 20)  # 20 MB
    stream = io.BytesIO(b"sentence,label\n" + field + b",1\nsmall,0\n")
    tracemalloc.start()
    try:
        good, bad = split_rows(parse_csv(stream, "in.csv", CONFIG, LIMIT))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [row.line for row in good] == [3]
    assert bad[0].reason == f"field 1 is {20 << 20} bytes, over data.max_field_bytes (100000)"
    assert peak < 2 << 20  # a few chunks and the kept 100 kB, not 20 MB


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"sentence,score", "no column 'label' (its columns: sentence, score)"),
        (b"sentence,sentence,label", "column 'sentence' appears more than once"),
        (b"sentence,,label", "column 2 has no name"),
        (b"sent\xffence,label", "not UTF-8: byte 0xff at column 5"),
    ],
)
def test_an_unusable_header_quarantines_it_and_every_row_of_the_file(header: bytes, reason: str):
    good, bad = parse(header + b"\nfirst,1\n\nsecond,0\n")
    assert good == []
    assert bad == [
        (1, f"unusable header: {reason}"),
        (2, f"the file's header (line 1) is unusable: {reason}"),
        (4, f"the file's header (line 1) is unusable: {reason}"),
    ]


def test_unlabelled_data_and_other_integer_columns():
    config = CsvConfig(integer_columns=("id",))
    good, bad = parse(b"id,sentence,label\n7,a,x\nseven,b,y\n", config)
    assert good == [(2, {"id": 7, "sentence": b"a", "label": b"x"})]
    assert bad == [(3, "id 'seven' is not an integer")]


def test_config_is_validated_and_round_trips():
    config = CsvConfig(label_column="y", num_classes=3, integer_columns=["id"])
    as_struct = {**config.to_dict(), "num_classes": 3.0}  # a protobuf Struct's numbers are doubles
    assert CsvConfig.from_dict(as_struct) == config
    for bad in (
        {"num_classes": 2},  # no label column
        {"label_column": "y", "num_classes": 0},
        {"label_column": "y", "num_classes": 1.5},
        {"label_column": ""},
        {"label_column": "y", "integer_columns": ["y"]},
        {"integer_columns": "id"},
        {"colour": "red"},
    ):
        with pytest.raises(ValueError):
            CsvConfig.from_dict(bad)
