"""The CoNLL parser: separators, columns, sentence boundaries, IOB1 -> IOB2, bad lines.

Imports neither TFX, Beam nor TensorFlow, so it runs in a second."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys

import pytest

from components.conll_example_gen import conll
from components.conll_example_gen.conll import ConllConfig, ConllFormatError
from components.quarantine import QuarantinedRow, split_rows

CONLL03 = ConllConfig(entity_types=("PER", "ORG", "LOC", "MISC"))


def parse(
    data: bytes, config: ConllConfig = CONLL03, max_field_bytes: int = 100_000
) -> tuple[list[tuple[list, list]], list[QuarantinedRow]]:
    """(tokens, tags) of each sentence, and the quarantined sentences, of a file's bytes."""
    sentences, bad = split_rows(conll.parse_conll(io.BytesIO(data), "in.conll", config, max_field_bytes))
    return [(s.tokens, s.tags) for s in sentences], bad


def test_the_parser_does_not_import_tfx_beam_or_tensorflow():
    code = (
        "import sys, components.conll_example_gen.conll; "
        "print(sorted({'tfx', 'apache_beam', 'tensorflow'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_tab_separated_with_blank_lines_and_whitespace_only_separators():
    # WNUT-17 writes some sentence breaks as a lone tab.
    data = b"@paul\tO\nEmpire\tB-LOC\nState\tI-LOC\n\t\nHi\tO\n\n\n"
    sentences, bad = parse(data)
    assert sentences == [(["@paul", "Empire", "State"], ["O", "B-LOC", "I-LOC"]), (["Hi"], ["O"])]
    assert bad == []


def test_space_separated_columns_tag_last_by_default():
    data = b"ACME NNP B-NP B-ORG\nships  VBZ   B-VP O\n"  # Runs of spaces are one separator.
    sentences, bad = parse(data)
    assert sentences == [(["ACME", "ships"], ["B-ORG", "O"])]
    assert bad == []


def test_a_line_with_a_tab_splits_on_tabs_only():
    sentences, bad = parse(b"New York\tB-LOC\nCity\tI-LOC\n")
    assert sentences == [(["New York", "City"], ["B-LOC", "I-LOC"])]
    assert bad == []


def test_tag_column_picks_the_column():
    data = b"ACME B-ORG NNP\nships O VBZ\n"
    config = ConllConfig(entity_types=("ORG",), tag_column=1)
    assert parse(data, config) == ([(["ACME", "ships"], ["B-ORG", "O"])], [])
    config = ConllConfig(entity_types=("ORG",), tag_column=-2)
    assert parse(data, config) == ([(["ACME", "ships"], ["B-ORG", "O"])], [])


def test_docstart_is_skipped_and_ends_a_sentence():
    data = b"-DOCSTART- -X- -X- O\n\nACME NNP B-NP B-ORG\n-DOCSTART- -X- -X- O\nAda NNP B-NP B-PER\n\n"
    sentences, bad = parse(data)
    assert sentences == [(["ACME"], ["B-ORG"]), (["Ada"], ["B-PER"])]
    assert bad == []


def test_iob1_is_normalised_to_iob2_per_sentence():
    # IOB1: I- starts an entity; B- only separates two adjacent entities of one type.
    data = b"Ada\tI-PER\nLovelace\tI-PER\nand\tO\nJohn\tI-PER\nPaul\tB-PER\n\nUK\tI-LOC\n"
    sentences, bad = parse(data)
    assert sentences == [
        (["Ada", "Lovelace", "and", "John", "Paul"], ["B-PER", "I-PER", "O", "B-PER", "B-PER"]),
        (["UK"], ["B-LOC"]),  # A new sentence: I-LOC starts an entity however the last one ended.
    ]
    assert bad == []


def test_a_final_sentence_without_a_blank_line_is_kept_and_trailing_whitespace_ignored():
    # A byte-order mark, CR LF endings, trailing spaces and tabs, no final newline.
    data = b"\xef\xbb\xbfA\tO  \r\nB\tB-PER\t\r\n \r\nC   O \nD I-ORG"
    sentences, bad = parse(data)
    assert sentences == [(["A", "B"], ["O", "B-PER"]), (["C", "D"], ["O", "B-ORG"])]
    assert bad == []


def test_tab_separated_fields_are_not_stripped():
    # With a tab on the line, spaces belong to the fields: " O" is not a tag.
    sentences, bad = parse(b"C \t O\n")
    assert sentences == []
    assert [(b.line, b.reason) for b in bad] == [(1, "not an IOB tag: ' O' (expected O, B-TYPE or I-TYPE)")]


def test_multibyte_tokens_are_decoded_per_line():
    data = "Zürich\tB-LOC\n東京\tB-LOC\n🙂\tO\nno\u00a0break\tO\n".encode()
    sentences, bad = parse(data)
    assert sentences == [(["Zürich", "東京", "🙂", "no\u00a0break"], ["B-LOC", "B-LOC", "O", "O"])]
    assert bad == []


def test_sentences_carry_file_and_first_line():
    data = io.BytesIO(b"-DOCSTART-\tO\n\nA\tO\n\n\nB\tO\nC\tO\n")
    sentences = list(conll.parse_conll(data, "x.conll", CONLL03))
    assert [(s.file, s.line) for s in sentences] == [("x.conll", 3), ("x.conll", 6)]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"Bad\tNNP\tO", "3 columns, but the file's first token line (line 1) has 2"),
        (b"Bad", "1 column, but the file's first token line (line 1) has 2"),
        (b"Bad\tB-FOO", "entity type 'FOO' of tag 'B-FOO' is not one of the configured types (PER, ORG, LOC, MISC)"),
        (b"Bad\tE-PER", "not an IOB tag: 'E-PER' (expected O, B-TYPE or I-TYPE)"),
        (b"Bad\tPER", "not an IOB tag: 'PER' (expected O, B-TYPE or I-TYPE)"),
        (b"Bad\to", "not an IOB tag: 'o' (expected O, B-TYPE or I-TYPE)"),
        (b"\tO", "empty token (column 0)"),
        (b"Bad\xff\xfe\tO", "not UTF-8: byte 0xff at column 4"),
        (b"B" * 101 + b"\tO", "line is 103 bytes, over data.max_field_bytes (100)"),
    ],
)
def test_each_bad_line_quarantines_its_sentence_with_the_line_and_reason(line: bytes, reason: str):
    data = b"Good\tO\n\nFirst\tO\n" + line + b"\r\nLast\tO\n\nAfter\tB-PER\n"
    sentences, bad = parse(data, max_field_bytes=100)
    assert sentences == [(["Good"], ["O"]), (["After"], ["B-PER"])]  # "First ... Last" dropped.
    # The row is the whole sentence: the bad line's number and reason, all its lines' bytes
    # (the first max_field_bytes of them).
    raw = b"First\tO\n" + line + b"\nLast\tO"
    assert bad == [QuarantinedRow("in.conll", 4, reason, raw[:100], truncated=len(raw) > 100)]
    assert bad[0].describe() == f"in.conll:4: {reason}"


def test_a_broken_first_line_does_not_set_the_column_count():
    sentences, bad = parse(b"Broken\n\nA\tO\nB\tB-PER\n")
    assert sentences == [(["A", "B"], ["O", "B-PER"])]
    assert [(b.line, b.reason) for b in bad] == [(1, "1 column: expected a token and a tag")]


def test_a_missing_tag_column_is_reported():
    config = ConllConfig(entity_types=("PER",), tag_column=3)
    sentences, bad = parse(b"A\tO\nB\tO\n", config)
    assert sentences == []
    assert [(b.line, b.reason) for b in bad] == [
        (1, "no tag column 3 in 2 columns; also line 2: no tag column 3 in 2 columns")]


def test_every_bad_line_of_a_sentence_is_named_in_its_one_row():
    sentences, bad = parse(b"A\tB-XX\nB\tO\nC\tI-YY\n\nD\tO\n")
    assert sentences == [(["D"], ["O"])]
    assert [(b.line, b.reason, b.raw) for b in bad] == [(
        1,
        "entity type 'XX' of tag 'B-XX' is not one of the configured types (PER, ORG, LOC, MISC); "
        "also line 3: entity type 'YY' of tag 'I-YY' is not one of the configured types "
        "(PER, ORG, LOC, MISC)",
        b"A\tB-XX\nB\tO\nC\tI-YY",
    )]


def test_a_long_bad_sentence_keeps_only_the_first_max_field_bytes_of_its_lines():
    data = b"".join(b"tok%03d\tO\n" % k for k in range(30)) + b"bad\tB-XX\n"
    _, [bad] = parse(data, max_field_bytes=50)
    assert (bad.line, len(bad.raw), bad.truncated) == (31, 50, True)
    assert data.startswith(bad.raw)


def test_read_conll_and_the_format_error_for_tools(tmp_path):
    path = tmp_path / "x.conll"
    path.write_bytes(b"A\tO\n\nB\tB-XX\n")
    sentences, bad = conll.read_conll(str(path), CONLL03)
    assert [s.tokens for s in sentences] == [["A"]]
    error = ConllFormatError(bad)
    assert str(error) == (
        f"1 bad row in the CoNLL input:\n  {path}:3: entity type 'XX' of tag 'B-XX' is not one "
        f"of the configured types (PER, ORG, LOC, MISC)"
    )
    copy = pickle.loads(pickle.dumps(error))  # Errors may cross process boundaries.
    assert (type(copy), str(copy), copy.rows) == (ConllFormatError, str(error), bad)


def test_config_is_validated_and_round_trips():
    config = ConllConfig(entity_types=["person", "creative-work"], tag_column=2, tokens_feature="words")
    assert config.entity_types == ("person", "creative-work")
    assert config.tag_names == ["O", "B-person", "I-person", "B-creative-work", "I-creative-work"]
    as_struct = {**config.to_dict(), "tag_column": 2.0}  # A protobuf Struct's numbers are doubles.
    assert ConllConfig.from_dict(as_struct) == config
    for bad in (
        {"entity_types": []},
        {"entity_types": "PER"},
        {"entity_types": ["PER", "PER"]},
        {"entity_types": ["B PER"]},
        {"entity_types": ["PER"], "tag_column": 0},
        {"entity_types": ["PER"], "tag_column": 1.5},
        {"entity_types": ["PER"], "tags_feature": "tokens"},
        {"entity_types": ["PER"], "colour": "red"},
    ):
        with pytest.raises(ValueError):
            ConllConfig.from_dict(bad)
