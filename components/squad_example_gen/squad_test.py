"""The SQuAD v1.1 reader: questions, code-point answer offsets, bad records with their JSON
positions, the shipped sample, and (slow: it imports TFX) the executor's split by article.

Everything but the last test imports neither TFX, Beam nor TensorFlow, so it runs in a
second."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from components.quarantine import (
    QuarantinedRow,
    TooManyBadRowsError,
    read_quarantine_file,
    split_rows,
)
from components.squad_example_gen import squad
from components.squad_example_gen.squad import Question, SquadFormatError

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = REPO_ROOT / "data" / "squad"

# 49 characters: "in Normandy" starts at 17, "Normandy" at 20, "France" at 42.
CONTEXT = "The Normans were in Normandy, a region in France."


def qa(qid: str, question: str, *answers: tuple[str, int]) -> dict[str, Any]:
    return {
        "id": qid,
        "question": question,
        "answers": [{"text": text, "answer_start": start} for text, start in answers],
    }


def document(*articles: dict[str, Any]) -> dict[str, Any]:
    return {"version": "1.1", "data": list(articles)}


def article(title: str, *paragraphs: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {"title": title, "paragraphs": [{"context": c, "qas": q} for c, q in paragraphs]}


def good_document() -> dict[str, Any]:
    return document(
        article(
            "Normans",
            (CONTEXT, [qa("q1", "Where were the Normans?", ("Normandy", 20), ("in Normandy", 17)),
                       qa("q2", "Which country?", ("France", 42))]),
            ("Rollo was a Viking.", [qa("q3", "Who was Rollo?", ("a Viking", 10))]),
        ),
        article("Zürich", ("Zürich is in Switzerland.", [qa("q4", "Where?", ("Switzerland", 13))])),
    )


def parse(value: Any, file: str = "in.json") -> tuple[list[Question], list[QuarantinedRow]]:
    """The questions and quarantined records of a document (a JSON value, or the file's
    bytes; a value is written on one line, so every record is on line 1)."""
    data = value if isinstance(value, bytes) else json.dumps(value, ensure_ascii=False).encode()
    return split_rows(squad.parse_squad(data, file))


def described(bad_records: list[QuarantinedRow]) -> list[str]:
    return [bad.describe() for bad in bad_records]


def test_the_parser_does_not_import_tfx_beam_or_tensorflow():
    code = (
        "import sys, components.squad_example_gen.squad; "
        "print(sorted({'tfx', 'apache_beam', 'tensorflow'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO_ROOT).stdout
    assert out.strip() == "[]"


def test_one_question_per_qa_with_its_title_context_and_every_answer_in_file_order():
    questions, bad = parse(good_document())
    assert bad == []
    assert questions[0] == Question(
        file="in.json",
        location="data[0].paragraphs[0].qas[0]",
        id="q1",
        title="Normans",
        question="Where were the Normans?",
        context=CONTEXT,
        answer_texts=("Normandy", "in Normandy"),
        answer_starts=(20, 17),
    )
    assert [(q.id, q.title, q.location) for q in questions] == [
        ("q1", "Normans", "data[0].paragraphs[0].qas[0]"),
        ("q2", "Normans", "data[0].paragraphs[0].qas[1]"),
        ("q3", "Normans", "data[0].paragraphs[1].qas[0]"),
        ("q4", "Zürich", "data[1].paragraphs[0].qas[0]"),
    ]
    assert questions[2].context == "Rollo was a Viking."


def test_answer_starts_are_code_points_not_utf8_bytes():
    # "Zürich 🙂 " is 9 code points: Z ü r i c h, space, the emoji (one code point, U+1F642),
    # space. In UTF-8 "ü" is 2 bytes and the emoji 4, so the same prefix is 9 + 1 + 3 = 13
    # bytes. The answer "Basel" starts at code point 9 (byte 13).
    context = "Zürich 🙂 Basel"
    assert context[9:14] == "Basel" and len(context[:9].encode("utf-8")) == 13
    good = document(article("Swiss", (context, [qa("q1", "Which city?", ("Basel", 9))])))
    [question], bad = parse(good)
    assert bad == []
    assert question.answer_starts == (9,)
    assert question.context[9:14] == "Basel"

    # An offset counted in UTF-8 bytes (13) is a bad record: in "Zürich 🙂 Basel, Bern"
    # code points 13 to 18 are "l, Be".
    context += ", Bern"
    in_bytes = document(article("Swiss", (context, [qa("q1", "Which city?", ("Basel", 13))])))
    questions, bad = parse(in_bytes)
    assert questions == []
    assert described(bad) == [
        "in.json:1: data[0].paragraphs[0].qas[0] (id q1): answers[0].answer_start: 13 points at "
        "'l, Be', not at the answer text 'Basel'; the text occurs at 9"
    ]


def test_a_wrong_answer_start_names_the_json_position_and_id_and_keeps_the_record():
    value = good_document()
    # "France" is at 42; 41 points at " Franc" (a space and 5 letters).
    value["data"][0]["paragraphs"][0]["qas"][1]["answers"][0]["answer_start"] = 41
    questions, bad = parse(value, "/data/dev.json")
    assert [q.id for q in questions] == ["q1", "q3", "q4"]  # Only q2 is dropped.
    assert described(bad) == [
        "/data/dev.json:1: data[0].paragraphs[0].qas[1] (id q2): answers[0].answer_start: 41 "
        "points at ' Franc', not at the answer text 'France'; the text occurs at 42"
    ]
    # The rejected question, as it was, so nothing is lost.
    assert json.loads(bad[0].raw) == value["data"][0]["paragraphs"][0]["qas"][1]


def test_a_file_that_is_not_json_names_line_and_column():
    # Line 3, column 14: the missing comma before "question".
    data = b'{"version": "1.1",\n "data": [\n  {"id": "x" "question": "?"}]}\n'
    questions, bad = parse(data, "/data/broken.json")
    assert questions == []
    assert described(bad) == ["/data/broken.json:3: not valid JSON at column 14: Expecting ',' delimiter"]
    assert (bad[0].line, bad[0].position, bad[0].raw) == (3, None, b'  {"id": "x" "question": "?"}]}')


def test_columns_count_characters_and_invalid_utf8_is_located():
    # `{"data": ["é" 1]}`: the "1" is character 15 (byte 16, as "é" is 2 bytes).
    _, bad = parse('{"data": ["é" 1]}'.encode())
    assert described(bad) == ["in.json:1: not valid JSON at column 15: Expecting ',' delimiter"]
    # Byte 15 of the file (0xff) is on line 2 after `"éx`, 3 characters (4 bytes): column 4.
    _, bad = parse('{"data": [\n"éx'.encode() + b"\xff" + b'"]}')
    assert described(bad) == ["in.json:2: not UTF-8: byte 0xff at column 4"]
    assert bad[0].raw == '"éx'.encode() + b'\xff"]}'


def test_a_utf8_byte_order_mark_is_ignored():
    data = b"\xef\xbb\xbf" + json.dumps(good_document()).encode()
    questions, bad = parse(data)
    assert (len(questions), bad) == (4, [])


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda q: q.pop("question"), "question: missing"),
        (lambda q: q.update(question="  "), "question: empty"),
        (lambda q: q.update(question=7), "question: expected a string, got 7 (a number)"),
        (lambda q: q.update(answers=[]), "answers: empty"),
        (lambda q: q.pop("answers"), "answers: missing"),
        (lambda q: q.update(answers={"text": "France"}), "answers: expected a list, got an object"),
        (lambda q: q.update(answers=["France"]),
         "answers[0]: expected an object, got 'France' (a string)"),
        (lambda q: q["answers"][0].pop("text"), "answers[0].text: missing"),
        (lambda q: q["answers"][0].update(text=""), "answers[0].text: empty"),
        (lambda q: q["answers"][0].pop("answer_start"), "answers[0].answer_start: missing"),
        (lambda q: q["answers"][0].update(answer_start="42"),
         "answers[0].answer_start: expected an integer, got '42' (a string)"),
        (lambda q: q["answers"][0].update(answer_start=42.0),
         "answers[0].answer_start: expected an integer, got 42.0 (a number)"),
        (lambda q: q["answers"][0].update(answer_start=True),
         "answers[0].answer_start: expected an integer, got true (a boolean)"),
        (lambda q: q["answers"][0].update(answer_start=None),
         "answers[0].answer_start: expected an integer, got null"),
        (lambda q: q["answers"][0].update(answer_start=-1),
         "answers[0].answer_start: -1 is negative"),
        (lambda q: q["answers"][0].update(text="Spain"),
         "answers[0].answer_start: 42 points at 'Franc', not at the answer text 'Spain'; "
         "the text is not in the context"),
        (lambda q: q.update(answers=[], is_impossible=True),
         "answers: empty (an unanswerable SQuAD 2.0 question; SQuAD v1.1 questions always "
         "have an answer)"),
    ],
)
def test_each_bad_question_is_reported_and_only_it_is_dropped(change, reason: str):
    value = good_document()
    change(value["data"][0]["paragraphs"][0]["qas"][1])  # q2, "France" at 42.
    questions, bad = parse(value)
    assert [q.id for q in questions] == ["q1", "q3", "q4"]
    assert described(bad) == [f"in.json:1: data[0].paragraphs[0].qas[1] (id q2): {reason}"]


def test_every_reason_of_a_question_is_given_and_a_bad_id_is_left_out_of_the_message():
    value = good_document()
    value["data"][1]["paragraphs"][0]["qas"][0] = {
        "id": 12,
        "answers": [{"text": "Switzerland", "answer_start": 13}, {"text": "Bern"}],
    }
    questions, bad = parse(value)
    assert [q.id for q in questions] == ["q1", "q2", "q3"]
    assert described(bad) == [
        "in.json:1: data[1].paragraphs[0].qas[0]: id: expected a string, got 12 (a number); "
        "question: missing; answers[1].answer_start: missing"
    ]


def test_a_bad_paragraph_or_article_is_one_record_and_its_questions_are_dropped():
    value = good_document()
    value["data"][0]["paragraphs"][0]["context"] = ""
    value["data"][0]["paragraphs"][1]["qas"] = []
    del value["data"][1]["title"]
    value["data"].append("an article")
    questions, bad = parse(value)
    assert questions == []
    assert described(bad) == [
        "in.json:1: data[0].paragraphs[0]: context: empty",
        "in.json:1: data[0].paragraphs[1]: qas: empty",
        "in.json:1: data[1]: title: missing",
        "in.json:1: data[2]: expected an object, got 'an article' (a string)",
    ]
    assert json.loads(bad[2].raw) == value["data"][1]  # The whole article is kept.


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ([], "expected an object with a 'data' list, got a list"),
        ({"version": "1.1"}, "data: missing"),
        ({"data": {}}, "data: expected a list, got an object"),
        ({"data": []}, "data: empty"),
    ],
)
def test_a_document_without_a_data_list_is_one_record(value: Any, reason: str):
    questions, bad = parse(value)
    assert questions == []
    assert described(bad) == [f"in.json:1: (top level): {reason}"]


def test_an_id_used_twice_in_a_file_drops_the_second_question():
    value = good_document()
    value["data"][1]["paragraphs"][0]["qas"][0]["id"] = "q1"
    questions, bad = parse(value)
    assert [q.id for q in questions] == ["q1", "q2", "q3"]
    assert described(bad) == [
        "in.json:1: data[1].paragraphs[0].qas[0] (id q1): id: also the id of "
        "data[0].paragraphs[0].qas[0]"
    ]


def test_long_texts_are_shortened_in_reasons():
    value = good_document()
    # Over 40 characters: the first 37 and "...".
    answer = value["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]
    answer.update(text="x" * 45, answer_start=0)
    _, bad = parse(value)
    assert bad[0].reason == (
        f"answers[0].answer_start: 0 points at {CONTEXT[:37] + '...'!r}, not at the answer "
        f"text '{'x' * 37}...'; the text is not in the context"
    )
    value["data"][0]["paragraphs"][0]["qas"][0]["question"] = 5
    value["data"][0]["paragraphs"][0]["qas"][0]["answers"] = "y" * 100
    _, bad = parse(value)
    assert f"got '{'y' * 37}...' (a string)" in bad[0].reason


def test_each_record_names_the_line_where_it_starts_and_keeps_its_text_as_in_the_file():
    value = good_document()
    value["data"][0]["paragraphs"][0]["qas"][1]["answers"] = []
    del value["data"][1]["title"]
    # Indented: q2's object opens on line 24, the second article's on line 48.
    data = json.dumps(value, indent=1, ensure_ascii=False).encode()
    assert data.splitlines()[23:25] == [b"      {", b'       "id": "q2",']
    assert data.splitlines()[47:49] == [b"  {", b'   "paragraphs": [']
    questions, bad = parse(data)
    assert [q.id for q in questions] == ["q1", "q3"]
    assert [(b.line, b.position, b.reason) for b in bad] == [
        (24, "data[0].paragraphs[0].qas[1] (id q2)", "answers: empty"),
        (48, "data[1]", "title: missing"),
    ]
    assert bad[0].describe() == "in.json:24: data[0].paragraphs[0].qas[1] (id q2): answers: empty"
    # `raw` is the record's text as it is in the file, from its opening brace to its closing.
    assert bad[0].raw == (b'{\n       "id": "q2",\n       "question": "Which country?",\n'
                          b'       "answers": []\n      }')
    assert json.loads(bad[1].raw) == value["data"][1]


def test_a_field_over_max_field_bytes_makes_its_record_bad():
    value = good_document()
    value["data"][0]["paragraphs"][1]["qas"][0]["question"] = "Who? " * 30
    data = json.dumps(value).encode()
    questions, bad = split_rows(squad.parse_squad(data, "in.json", max_field_bytes=100))
    assert [q.id for q in questions] == ["q1", "q2", "q4"]
    assert described(bad) == [
        "in.json:1: data[0].paragraphs[1].qas[0] (id q3): question: 150 bytes, over "
        "data.max_field_bytes (100)"]
    assert (len(bad[0].raw), bad[0].truncated) == (100, True)


def test_format_error_for_tools_lists_the_first_ten_and_the_total():
    records = [
        QuarantinedRow("/d/dev.json", 1, "answers: empty", position=f"data[0].paragraphs[0].qas[{k}] (id q{k})")
        for k in range(12)
    ]
    error = SquadFormatError(records)
    message = str(error).splitlines()
    assert message[0] == error.summary == "12 bad rows in the SQuAD input; the first 10:"
    assert message[1] == "  /d/dev.json:1: data[0].paragraphs[0].qas[0] (id q0): answers: empty"
    assert message[-1] == "  ... and 2 more"
    assert len(message) == 12
    copied = pickle.loads(pickle.dumps(error))  # Errors may cross process boundaries.
    assert (str(copied), copied.total, copied.rows) == (str(error), 12, records[:10])


def test_the_shipped_sample_reads_without_bad_records_and_splits_by_article():
    train, train_bad = squad.read_squad(str(SAMPLE_DIR / "train.json"))
    evaluation, eval_bad = squad.read_squad(str(SAMPLE_DIR / "eval.json"))
    assert train_bad == eval_bad == []
    assert (len(train), len(evaluation)) == (1224, 344)  # data/squad/README.md
    train_titles, eval_titles = {q.title for q in train}, {q.title for q in evaluation}
    assert (len(train_titles), len(eval_titles)) == (11, 3)
    assert not train_titles & eval_titles
    assert eval_titles == {"Normans", "Sky_(United_Kingdom)", "Victoria_(Australia)"}
    # Non-ASCII text before an answer occurs in the real data, so code points matter there.
    assert any(not q.context[: q.answer_starts[0]].isascii() for q in train)


def _many_articles() -> dict[str, Any]:
    """20 articles of 2 paragraphs and 3 questions each, one answer "Zürich" after an emoji."""
    articles = []
    for a in range(20):
        context = f"🙂 Article {a} is about Zürich."
        start = context.index("Zürich")  # 21 code points for a < 10 (24 bytes).
        questions = [qa(f"a{a}q{k}", f"Question {k} of {a}?", ("Zürich", start)) for k in range(2)]
        articles.append(article(f"Title {a}", (context, questions),
                                (f"More on {a}.", [qa(f"a{a}q2", "More?", (f"{a}", 8))])))
    return document(*articles)


@pytest.mark.slow
def test_executor_hash_splits_by_title_so_no_article_is_in_both_splits(tmp_path: Path):
    # Imports TFX and runs the real executor through Beam (DirectRunner), like TFX would
    # with the component's default output_config (one input split, 4:1 by title).
    import tensorflow as tf
    from tfx.types import standard_artifacts

    from components.squad_example_gen import executor as squad_executor
    from components.squad_example_gen.component import SquadExampleGen
    from serving import question_answering_features as features

    (tmp_path / "in").mkdir()
    value = _many_articles()
    (tmp_path / "in" / "dev.json").write_text(json.dumps(value, ensure_ascii=False), "utf-8")
    component = SquadExampleGen(str(tmp_path / "in"))
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "out")
    squad_executor.Executor().Do({}, {"examples": [examples]}, dict(component.exec_properties))

    assert examples.get_int_custom_property("rows_read") == 60
    assert examples.get_int_custom_property("rows_quarantined") == 0
    assert (tmp_path / "out.quarantine.jsonl").read_bytes() == b""
    splits: dict[str, list[dict[str, list]]] = {}
    for split in ("train", "eval"):
        files = sorted(str(p) for p in (tmp_path / "out" / f"Split-{split}").glob("*.gz"))
        rows = []
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            rows.append({name: list(f.bytes_list.value or f.int64_list.value)
                         for name, f in feature.items()})
        splits[split] = rows
    train_titles = {row[features.TITLE][0] for row in splits["train"]}
    eval_titles = {row[features.TITLE][0] for row in splits["eval"]}
    assert train_titles and eval_titles
    assert not train_titles & eval_titles
    assert len(splits["train"]) + len(splits["eval"]) == 60
    assert len(train_titles | eval_titles) == 20
    # Every question of an article travels with it.
    for rows in splits.values():
        for title in {row[features.TITLE][0] for row in rows}:
            assert sum(row[features.TITLE][0] == title for row in rows) == 3

    [row] = [r for rows in splits.values() for r in rows if r[features.ID] == [b"a3q1"]]
    assert row == {
        features.ID: [b"a3q1"],
        features.TITLE: [b"Title 3"],
        features.QUESTION: [b"Question 1 of 3?"],
        features.CONTEXT: ["🙂 Article 3 is about Zürich.".encode()],
        features.ANSWER_TEXTS: ["Zürich".encode()],
        features.ANSWER_STARTS: [21],  # Code points: the emoji counts 1, not 4.
    }


def test_many_articles_fixture_is_valid():
    # The executor test's input, checked without TFX (so a mistake in it shows here).
    questions, bad = parse(_many_articles())
    assert (len(questions), bad) == (60, [])


@pytest.mark.slow
def test_executor_with_train_eval_files_quarantines_bad_records_and_fails(tmp_path: Path):
    # Explicit input splits (no hash split). Run outside a pipeline, the artifact directory
    # stays (TFX deletes a failed execution's outputs), so the examples can be read too.
    import tensorflow as tf
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_artifacts

    from components.squad_example_gen import executor as squad_executor
    from components.squad_example_gen.component import SquadExampleGen

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "train.json").write_text(json.dumps(good_document()), "utf-8")
    broken = good_document()
    broken["data"][1]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 12
    (tmp_path / "in" / "eval.json").write_text(json.dumps(broken), "utf-8")
    input_config = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name="train", pattern="train.json"),
        example_gen_pb2.Input.Split(name="eval", pattern="eval.json"),
    ])
    component = SquadExampleGen(str(tmp_path / "in"), input_config)
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "out")

    eval_path = str(tmp_path / "in" / "eval.json")
    expected = (
        f"{eval_path}:1: data[1].paragraphs[0].qas[0] (id q4): answers[0].answer_start: 12 "
        f"points at ' Switzerlan', not at the answer text 'Switzerland'; the text occurs at 13"
    )
    with pytest.raises(TooManyBadRowsError) as raised:
        squad_executor.Executor().Do({}, {"examples": [examples]}, dict(component.exec_properties))
    quarantine_file = str(tmp_path / "out.quarantine.jsonl")
    assert str(raised.value) == (
        f"1 of 8 rows read (12.5%) were quarantined, over data.max_bad_fraction 0 (0%); "
        f"all are in {quarantine_file}:\n  {expected}"
    )
    assert examples.get_int_custom_property("rows_quarantined") == 1
    [bad] = read_quarantine_file(quarantine_file)
    assert bad.describe() == expected
    assert json.loads(bad.raw) == broken["data"][1]["paragraphs"][0]["qas"][0]
    for split, count in (("train", 4), ("eval", 3)):  # q4 of eval dropped.
        files = [str(p) for p in (tmp_path / "out" / f"Split-{split}").glob("*.gz")]
        assert sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP")) == count


@pytest.mark.slow
def test_hash_output_splits_must_be_by_title():
    from tfx.proto import example_gen_pb2

    from components.squad_example_gen.component import SquadExampleGen
    from serving import question_answering_features as features

    by_question = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=9),
        example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1),
    ]))
    with pytest.raises(ValueError, match="partition_feature_name to 'title'"):
        SquadExampleGen("data/squad", output_config=by_question)
    by_question.split_config.partition_feature_name = features.TITLE
    SquadExampleGen("data/squad", output_config=by_question)  # Accepted.
