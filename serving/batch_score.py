"""`bertpipe score`: batch-score files with a pushed SavedModel on Apache Beam.

    bertpipe score --model-dir serving_models/sst2/2 --input 'data/*.csv' --output out/preds \\
        [--format jsonl|csv] [--text-column sentence] [--runner DirectRunner] \\
        [--direct_num_workers=2 --direct_running_mode=multi_processing ...]
    bertpipe score --model-dir serving_models/squad/1 --input 'questions/*.jsonl' \\
        --output out/answers [--question-column question] [--context-column context]

Inputs (one format per run, from the file extension unless `--input-format` says):

* text (`.txt`, anything else): one text per line; blank lines are skipped.
* CSV (`.csv`): a header row; the text is in `--text-column` (default `sentence`).
* JSONL (`.jsonl`): one JSON object per line (blank lines skipped); the text is its
  `--text-column` field, a string.
* TFRecord (`.tfrecord`, `.tfrecords`, `.tfr`; `.gz` compressed too): serialized
  tf.Examples, scored with the model's own `from_examples` signature (so the model's feature
  parsing applies); `--text-column` only names the feature echoed in the output.

A question-answering model is told by its `serving_default` inputs (two strings, `question`
and `context`, `serving.question_answering_export`): each CSV row or JSONL object then holds
a question and its passage, in `--question-column` and `--context-column` (default
`question`, `context`); TFRecords go through `from_examples` as above, echoing their
`question` and `context` features. Plain text files cannot hold the pairs and are refused.

Each record goes through Beam's RunInference with `SavedModelSignatureHandler`, a model
handler that calls a SavedModel signature on batches of strings (Beam's TF handlers load
models with `tf.keras.models.load_model`, which Keras 3 cannot do for a plain SavedModel, and
tfx-bsl's RunInference only takes tf.Examples). The output has one record per input, with
its source `file` and `line` (record number for TFRecords) and the `text`, then what the
model's task gives (`serving.predictions`, chosen by the signature's output names):

* classification: the `label` and the `probabilities` (JSONL), or `label` and
  `probability_<class>` columns (CSV).
* entities (an NER model's `serving_default`): `entities`, a list of `{"start", "end",
  "text", "label", "score"}` (JSONL), or one `entities` column holding that list as JSON
  (CSV). Offsets are in characters of `text`.
* token tags (an NER model's `from_examples`, TFRecord inputs): `token_labels` and
  `token_scores`, one per word (JSON lists in CSV); a multi-valued `--text-column` feature
  (the words) is echoed as `text` joined with spaces.
* answer (a question-answering model): `question` and `context` instead of `text`, then
  `answer`, `{"text", "start", "end", "score"}` with offsets in characters of `context`, or
  null when there is none (JSONL); `answer_text`, `answer_start`, `answer_end`, `score`
  columns, all four empty when there is no answer (CSV).

The output is in input order: one output file per input file, `<output>-NNNNN-of-MMMMM.jsonl`
(or `.csv`, each with the header) where NNNNN is the input file's place among the inputs in
sorted path order, its records in line order (the record number for TFRecords); every input
file gets its output file, empty or not. Reading the outputs in name order gives the inputs'
order. An input file's records are sorted in one worker's memory: split a very large input
into several files.

While it runs, each worker process prints `scoring: 1,200 rows so far (85 rows/s)` to standard
error every 10 seconds, and at the end `bertpipe score: scored 1,234 rows in 14.2 s (87
rows/s)`, the total over all workers from Beam's metrics (`pipeline.beam_progress`).

Every other flag is passed to Beam (`--runner`, `--direct_num_workers`, ...).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import (
    KeyedModelHandler,
    ModelHandler,
    PredictionResult,
    RunInference,
)
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.beam_progress import CountRows, rate, rows_counted
from serving import predictions
from serving.saved_model_files import class_names, read_saved_model_proto

logger = logging.getLogger("bertpipe.score")
PROGRESS_LABEL = "scoring"  # the progress lines' first word and the rows counter's name

TEXT_SIGNATURE, TEXT_INPUT = "serving_default", "text"
EXAMPLES_SIGNATURE, EXAMPLES_INPUT = "from_examples", "examples"
QA_INPUTS = predictions.QA_INPUTS  # a question-answering model's serving_default inputs
DT_STRING = 7  # tensorflow.DataType
FORMATS = ("text", "csv", "jsonl", "tfrecord")
_EXTENSIONS = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".tfrecord": "tfrecord",
    ".tfrecords": "tfrecord",
    ".tfr": "tfrecord",
}

# A record's key: (file, line, the inputs echoed in the output: the text, or
# {"question", "context"} for a question-answering model).
Key = tuple[str, int, str | dict[str, str]]


class InputError(ValueError):
    """A bad input record; the message starts with `file:line:`."""


def input_format_of(path: str) -> str:
    """ "text", "csv" or "tfrecord" from the file name (a trailing .gz is ignored)."""
    name = path[:-3] if path.endswith(".gz") else path
    return _EXTENSIONS.get(os.path.splitext(name)[1].lower(), "text")


def _decoded_lines(path: str, keep_ends: bool = False) -> Iterator[tuple[int, str]]:
    """(line number, text) for every line (without its newline unless `keep_ends`), with a
    clear error on bad UTF-8."""
    with FileSystems.open(path) as f:  # decompresses .gz/.bz2 by extension
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(
                    f"{path}:{number}: line is not valid UTF-8 ({e.reason} at byte {e.start})"
                ) from None
            if number == 1:
                line = line.removeprefix("\ufeff")
            yield number, line if keep_ends else line.rstrip("\r\n")


def read_text_records(path: str) -> Iterator[tuple[tuple[str, int, str], str]]:
    for number, line in _decoded_lines(path):
        if line.strip():
            yield (path, number, line), line


def read_csv_records(path: str, text_column: str) -> Iterator[tuple[tuple[str, int, str], str]]:
    for number, (text,) in _csv_rows(path, {text_column: "--text-column"}):
        yield (path, number, text), text


def read_question_records(
    path: str, input_format: str, question_column: str, context_column: str
) -> Iterator[tuple[Key, tuple[str, str]]]:
    """A CSV or JSONL file's (question, context) rows for a question-answering model, keyed
    with {"question", "context"} (the model's input names, whatever the columns are called)."""
    columns = {question_column: "--question-column", context_column: "--context-column"}
    if question_column == context_column:
        raise InputError(
            f"{path}:1: --question-column and --context-column both name {question_column!r}"
        )
    rows = _csv_rows(path, columns) if input_format == "csv" else _jsonl_rows(path, columns)
    for number, (question, context) in rows:
        yield (path, number, {"question": question, "context": context}), (question, context)


def _jsonl_rows(path: str, columns: dict[str, str]) -> Iterator[tuple[int, list[str]]]:
    """(line number, [the string in each column]) per JSON object line; `columns` maps a
    field name to the flag that chooses it (named in the error when the field is missing)."""
    for number, line in _decoded_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise InputError(f"{path}:{number}: not valid JSON: {e}") from None
        if not isinstance(row, dict):
            raise InputError(
                f"{path}:{number}: expected a JSON object, found {type(row).__name__}"
            )
        values = []
        for column, flag in columns.items():
            if column not in row:
                raise InputError(
                    f"{path}:{number}: no field {column!r} in the JSON object (fields: "
                    f"{', '.join(row) or 'none'}); choose one with {flag}"
                )
            if not isinstance(row[column], str):
                raise InputError(
                    f"{path}:{number}: field {column!r} is {type(row[column]).__name__}, "
                    "not a string"
                )
            values.append(row[column])
        yield number, values


def read_jsonl_records(
    path: str, text_column: str
) -> Iterator[tuple[tuple[str, int, str], str]]:
    for number, (text,) in _jsonl_rows(path, {text_column: "--text-column"}):
        yield (path, number, text), text


def _csv_rows(path: str, columns: dict[str, str]) -> Iterator[tuple[int, list[str]]]:
    """(line number of the row's first line, [the value in each column]) per CSV row;
    `columns` maps a column name to the flag that chooses it (named when it is missing)."""
    lines = _decoded_lines(path, keep_ends=True)  # quoted fields may hold newlines
    line_numbers: list[int] = []

    def physical_lines() -> Iterator[str]:
        for number, line in lines:
            line_numbers.append(number)
            yield line

    reader = csv.reader(physical_lines(), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError(f"{path}:1: empty CSV file (expected a header row)") from None
    except csv.Error as e:
        raise InputError(f"{path}:1: malformed CSV header: {e}") from None
    for column, flag in columns.items():
        if column not in header:
            raise InputError(
                f"{path}:1: no column {column!r} in the CSV header (columns: "
                f"{', '.join(header)}); choose one with {flag}"
            )
    indices = [header.index(column) for column in columns]
    while True:
        consumed = len(line_numbers)
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise InputError(f"{path}:{line_numbers[-1]}: malformed CSV: {e}") from None
        number = line_numbers[consumed]  # a quoted field may span lines: report the first
        if not row:
            continue  # blank line
        if len(row) != len(header):
            raise InputError(
                f"{path}:{number}: expected {len(header)} fields like the header, found {len(row)}"
            )
        yield number, [row[index] for index in indices]


def read_tfrecord_records(
    path: str, text_column: str, question_answering: bool = False
) -> Iterator[tuple[Key, bytes]]:
    """(key, serialized tf.Example) per record; the key echoes the `text_column` feature, or
    the `question` and `context` features for a question-answering model (the features its
    `from_examples` parses)."""
    import tensorflow as tf

    from serving.protos import serving_protos

    example_pb2 = serving_protos().example_pb2
    dataset = tf.data.TFRecordDataset(path, compression_type="GZIP" if path.endswith(".gz") else "")
    number = 0
    try:
        for record in dataset.as_numpy_iterator():
            number += 1
            try:
                example = example_pb2.Example.FromString(record)
            except Exception:  # noqa: BLE001  (DecodeError or worse: report the record)
                raise InputError(
                    f"{path}:{number}: record is not a serialized tf.Example"
                ) from None
            if question_answering:
                echoed: str | dict[str, str] = {
                    name: _feature_text(example, name) for name in QA_INPUTS
                }
            else:
                echoed = _feature_text(example, text_column)
            yield (path, number, echoed), record
    except tf.errors.OpError as e:
        raise InputError(f"{path}:{number + 1}: cannot read the TFRecord: {e.message}") from None


def _feature_text(example, name: str) -> str:
    """A bytes feature's values as text: one value for a text; a token classifier's words
    are many (a classifier cannot parse those, so joining them changes nothing that worked)."""
    feature = example.features.feature.get(name)
    values = feature.bytes_list.value if feature is not None else []
    return " ".join(v.decode("utf-8", errors="replace") for v in values)


class ReadRecords(beam.DoFn):
    """file path -> ((file, line, echoed inputs), model input) for every record in the file.

    Args:
        input_format: one of `FORMATS`.
        text_column: the text's CSV column / JSON field / echoed tf.Example feature.
        qa_columns: (question column, context column) for a question-answering model, whose
            model input is then the (question, context) pair; None for a text model.
    """

    def __init__(
        self, input_format: str, text_column: str, qa_columns: tuple[str, str] | None = None
    ):
        self.input_format = input_format
        self.text_column = text_column
        self.qa_columns = qa_columns

    def process(self, path: str) -> Iterable[tuple[Key, Any]]:
        if self.input_format == "tfrecord":
            yield from read_tfrecord_records(path, self.text_column, self.qa_columns is not None)
        elif self.qa_columns is not None:
            yield from read_question_records(path, self.input_format, *self.qa_columns)
        elif self.input_format == "csv":
            yield from read_csv_records(path, self.text_column)
        elif self.input_format == "jsonl":
            yield from read_jsonl_records(path, self.text_column)
        else:
            yield from read_text_records(path)


class SavedModelSignatureHandler(ModelHandler[Any, PredictionResult, Any]):
    """RunInference model handler calling one SavedModel signature on batches of strings.

    Args:
        model_dir: the SavedModel (a pushed version directory).
        signature_name / input_name: the signature and its single string input, or a tuple
            of its input names (e.g. `QA_INPUTS`): each element is then a tuple of strings
            in that order, and every input gets its own [batch] string tensor.
        min_batch_size / max_batch_size: RunInference's batching bounds.
    """

    def __init__(
        self,
        model_dir: str,
        signature_name: str = TEXT_SIGNATURE,
        input_name: str | tuple[str, ...] = TEXT_INPUT,
        min_batch_size: int = 1,
        max_batch_size: int = 64,
    ):
        super().__init__()
        self.model_dir = model_dir
        self.signature_name = signature_name
        self.input_name = input_name
        self._batching = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size}

    def load_model(self):
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (the tokenizer ops)

        loaded = tf.saved_model.load(self.model_dir, tags=["serve"])
        if self.signature_name not in loaded.signatures:
            raise ValueError(f"{self.model_dir} has no signature {self.signature_name!r}")
        return loaded

    def run_inference(
        self, batch: Sequence[Any], model, inference_args=None
    ) -> Iterable[PredictionResult]:
        import tensorflow as tf

        function = model.signatures[self.signature_name]
        if isinstance(self.input_name, str):
            columns = {self.input_name: list(batch)}
        else:
            columns = {
                name: [element[index] for element in batch]
                for index, name in enumerate(self.input_name)
            }
        outputs = function(
            **{name: tf.constant(values, dtype=tf.string) for name, values in columns.items()}
        )
        arrays = {name: tensor.numpy() for name, tensor in outputs.items()}
        for row, example in enumerate(batch):
            yield PredictionResult(example, {name: array[row] for name, array in arrays.items()})

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        return sum(
            sum(len(part) for part in item) if isinstance(item, tuple) else len(item)
            for item in batch
        )

    def get_metrics_namespace(self) -> str:
        return "bertpipe_score"

    def batch_elements_kwargs(self) -> dict:
        return dict(self._batching)


def result_record(keyed: tuple[Key, PredictionResult]) -> dict:
    """A scored input -> {file, line, text (or question, context), <the task's fields>}; the
    task is the one the inference's output names identify (`serving.predictions.task_for`)."""
    (path, line, inputs), result = keyed
    inference = result.inference
    record = predictions.task_for(inference).record(inputs, inference)
    echoed = {"text": inputs} if isinstance(inputs, str) else dict(inputs)
    return {"file": path, "line": line, **echoed, **record}


def csv_columns(
    names: Sequence[str] | None, task: str = predictions.CLASSIFICATION
) -> list[str]:
    """The CSV header: file, line, the inputs (text, or question and context), then the
    task's columns (`names`: class names)."""
    task_ = predictions.task_named(task)
    return ["file", "line", *task_.inputs] + task_.header(names)


def to_csv_line(record: dict, task: str = predictions.CLASSIFICATION) -> str:
    """A record (`result_record`) -> one CSV line in `csv_columns` order."""
    import io

    task_ = predictions.task_named(task)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(
        [record["file"], record["line"]]
        + [record[name] for name in task_.inputs]
        + task_.cells(record)
    )
    return buffer.getvalue()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bertpipe score",
        description="Batch-score text, CSV, JSONL or TFRecord files with a SavedModel on Apache "
        "Beam. Unknown flags are Beam pipeline options.",
    )
    parser.add_argument(
        "--model-dir",
        required=True,
        help="SavedModel version directory, e.g. serving_models/sst2/2",
    )
    parser.add_argument(
        "--input",
        required=True,
        action="append",
        help="file or glob (repeatable), e.g. 'data/*.csv'",
    )
    parser.add_argument("--output", required=True, help="output prefix, e.g. out/preds")
    parser.add_argument(
        "--format",
        choices=("jsonl", "csv"),
        default="jsonl",
        help="output format (default: %(default)s)",
    )
    parser.add_argument(
        "--input-format",
        choices=("auto",) + FORMATS,
        default="auto",
        help="input format (default: from the file extension)",
    )
    parser.add_argument(
        "--text-column",
        default="sentence",
        help="CSV column, JSON field (or tf.Example feature echoed) holding the text "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--question-column",
        default="question",
        help="CSV column or JSON field holding the question, for a question-answering model "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--context-column",
        default="context",
        help="CSV column or JSON field holding the passage, for a question-answering model "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="max texts per model call (default: %(default)s)"
    )
    parser.add_argument(
        "--runner", default="DirectRunner", help="Beam runner (default: %(default)s)"
    )
    return parser


def _expand_inputs(patterns: Sequence[str]) -> list[str]:
    files: list[str] = []
    for pattern in patterns:
        matched = [m.path for result in FileSystems.match([pattern]) for m in result.metadata_list]
        if not matched:
            raise InputError(f"no files match {pattern!r}")
        files.extend(p for p in matched if not os.path.isdir(p))  # remote paths: never dirs
    return sorted(set(files))


def build_pipeline(
    pipeline: beam.Pipeline,
    args: argparse.Namespace,
    files: list[str],
    input_format: str,
    names: list[str] | None,
    task: str = predictions.CLASSIFICATION,
    question_answering: bool = False,
):
    """Adds read -> RunInference -> records -> write to `pipeline`. `question_answering`: the
    model takes `question` and `context` (`takes_questions`), read from
    `--question-column`/`--context-column` (CSV, JSONL)."""
    input_name: str | tuple[str, ...]
    if input_format == "tfrecord":
        signature, input_name = EXAMPLES_SIGNATURE, EXAMPLES_INPUT
    elif question_answering:
        signature, input_name = TEXT_SIGNATURE, QA_INPUTS
    else:
        signature, input_name = TEXT_SIGNATURE, TEXT_INPUT
    qa_columns = (
        (args.question_column, args.context_column) if question_answering else None
    )
    handler = SavedModelSignatureHandler(
        args.model_dir, signature, input_name, max_batch_size=max(1, args.batch_size)
    )
    records = (
        pipeline
        | "ListFiles" >> beam.Create(files)
        | "SpreadFiles" >> beam.Reshuffle()
        | "ReadRecords" >> beam.ParDo(ReadRecords(input_format, args.text_column, qa_columns))
        | "RunInference" >> RunInference(KeyedModelHandler(handler))
        | "ToRecord" >> beam.Map(result_record)
        | "CountRows" >> beam.ParDo(CountRows(PROGRESS_LABEL, "rows"))
    )
    if args.format == "jsonl":
        lines = records | "ToJson" >> beam.Map(
            lambda r: (r["file"], r["line"], json.dumps(r, ensure_ascii=False)))
        suffix, header = ".jsonl", None
    else:
        lines = records | "ToCsv" >> beam.Map(
            lambda r: (r["file"], r["line"], to_csv_line(r, task)))
        suffix, header = ".csv", ",".join(csv_columns(names, task))
    lines | "Write" >> WriteInInputOrder(args.output, files, suffix, header)


def output_file_name(output: str, index: int, count: int, suffix: str) -> str:
    """The output of the `index`-th of `count` input files (sorted paths)."""
    return f"{output}-{index:05d}-of-{count:05d}{suffix}"


class _WriteInputFileFn(beam.DoFn):
    """Writes one input file's output lines, in line order, to its own output file."""

    def __init__(self, output: str, files: list[str], suffix: str, header: str | None):
        self._output, self._suffix, self._header = output, suffix, header
        self._index = {path: index for index, path in enumerate(files)}

    def process(self, element: tuple[str, dict[str, list]]) -> Iterator[str]:
        path, grouped = element
        lines = [line for _, line in sorted(grouped["lines"], key=lambda pair: pair[0])]
        name = output_file_name(self._output, self._index[path], len(self._index), self._suffix)
        # The whole file in one go, under a temporary name then renamed: a retried bundle
        # rewrites it whole, and a reader never sees half of one.
        temporary = f"{name}.tmp-{os.getpid()}"
        with FileSystems.create(temporary) as f:
            text = "".join(f"{line}\n" for line in ([self._header] if self._header else []) + lines)
            f.write(text.encode("utf-8"))
        if FileSystems.exists(name):
            FileSystems.delete([name])
        FileSystems.rename([temporary], [name])
        yield name


class WriteInInputOrder(beam.PTransform):
    """(input file, line, output line) -> one output file per input file, lines in order."""

    def __init__(self, output: str, files: list[str], suffix: str, header: str | None):
        super().__init__()
        self._output, self._files, self._suffix, self._header = output, files, suffix, header

    def expand(self, keyed_lines: beam.PCollection) -> beam.PCollection:
        by_file = keyed_lines | "KeyByFile" >> beam.Map(lambda r: (r[0], (r[1], r[2])))
        # Every input file, so one without rows still gets its (empty) output file.
        all_files = keyed_lines.pipeline | "InputFiles" >> beam.Create(
            [(path, None) for path in self._files])
        return (
            {"lines": by_file, "file": all_files}
            | "GroupByFile" >> beam.CoGroupByKey()
            | "WriteFile" >> beam.ParDo(
                _WriteInputFileFn(self._output, self._files, self._suffix, self._header))
        )


def takes_questions(saved_model) -> bool:
    """Whether the model's `serving_default` takes exactly two strings, `question` and
    `context` (the question-answering export contract): then each input row is a pair."""
    signatures = saved_model.meta_graphs[0].signature_def
    if TEXT_SIGNATURE not in signatures:
        return False
    inputs = signatures[TEXT_SIGNATURE].inputs
    return set(inputs) == set(QA_INPUTS) and all(
        inputs[name].dtype == DT_STRING for name in QA_INPUTS
    )


def main(argv: list[str] | None = None) -> int:
    args, beam_args = _parser().parse_known_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("apache_beam").setLevel(logging.WARNING)  # per-bundle chatter
    for handler in logging.getLogger().handlers:
        handler.addFilter(_hide_input_error_tracebacks)
    try:
        saved_model = read_saved_model_proto(args.model_dir)
    except ValueError as e:
        print(f"bertpipe score: {e}", file=sys.stderr)
        return 2
    try:
        files = _expand_inputs(args.input)
    except InputError as e:
        print(f"bertpipe score: {e}", file=sys.stderr)
        return 2
    formats = (
        {input_format_of(f) for f in files} if args.input_format == "auto" else {args.input_format}
    )
    if len(formats) != 1:
        print(
            f"bertpipe score: inputs mix formats {sorted(formats)}; score them separately "
            "or pass --input-format",
            file=sys.stderr,
        )
        return 2
    input_format = formats.pop()
    question_answering = takes_questions(saved_model)
    if question_answering and input_format == "text":
        print(
            f"bertpipe score: {args.model_dir} answers questions (inputs question, context): "
            "give CSV or JSONL rows with --question-column and --context-column, or "
            "TFRecords, not plain text",
            file=sys.stderr,
        )
        return 2
    signature = EXAMPLES_SIGNATURE if input_format == "tfrecord" else TEXT_SIGNATURE
    if signature not in saved_model.meta_graphs[0].signature_def:
        print(
            f"bertpipe score: {args.model_dir} has no {signature!r} signature (needed for "
            f"{input_format} inputs)",
            file=sys.stderr,
        )
        return 2
    outputs = saved_model.meta_graphs[0].signature_def[signature].outputs
    try:
        task = predictions.task_for(outputs)
    except ValueError as e:
        print(f"bertpipe score: {args.model_dir} ({signature}): {e}", file=sys.stderr)
        return 2
    names = None
    if task.name == predictions.CLASSIFICATION:
        # The probability columns are named by class; the export keeps the names.
        width = int(outputs["probabilities"].tensor_shape.dim[-1].size)
        names = class_names(saved_model) or [str(i) for i in range(width)]
    output_dir = os.path.dirname(args.output)
    if output_dir and "://" not in args.output:
        os.makedirs(output_dir, exist_ok=True)
    options = PipelineOptions(beam_args + [f"--runner={args.runner}"])
    logger.info(
        "Scoring %d %s file(s) with %s (%s, %s)",
        len(files),
        input_format,
        args.model_dir,
        signature,
        task.name,
    )
    started = time.monotonic()
    try:
        with beam.Pipeline(options=options) as pipeline:
            build_pipeline(
                pipeline, args, files, input_format, names, task.name, question_answering
            )
    except Exception as e:  # noqa: BLE001  (report bad inputs without a Beam stack trace)
        message = str(e)
        if isinstance(e, InputError) or "InputError" in message or _is_input_error(e):
            first = next((line for line in message.splitlines() if line.strip()), message)
            first = re.sub(r" \[while running '[^']*'\]$", "", first.split("InputError: ")[-1])
            print(f"bertpipe score: {first}", file=sys.stderr)
            return 1
        raise
    rows, seconds = rows_counted(pipeline.result, PROGRESS_LABEL), time.monotonic() - started
    print(f"bertpipe score: scored {rows:,} rows in {seconds:.1f} s ({rate(rows, seconds)} rows/s)",
          file=sys.stderr)
    print(f"bertpipe score: wrote {args.output}-*{'.jsonl' if args.format == 'jsonl' else '.csv'}")
    return 0


def _hide_input_error_tracebacks(record: logging.LogRecord) -> bool:
    """Drops Beam's logged tracebacks for bad inputs: `main` reports them in one line."""
    return not (record.exc_info and _is_input_error(record.exc_info[1]))


def _is_input_error(error: BaseException) -> bool:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, InputError):
            return True
        error = error.__cause__ or error.__context__
    return False


if __name__ == "__main__":
    sys.exit(main())
