"""Benchmark: BERT pretraining-data generation, bertpipe on Beam against two references.

One run over the repository's corpus (data/corpus: two public-domain novels, one document
per chapter) with the same settings everywhere: max_seq_length 128, max_predictions_per_seq
20, masked_lm_prob 0.15, short_seq_prob 0.1, dupe_factor (default 1), the MiniLM uncased
vocabulary (30,522 tokens), lower-casing.

  bertpipe      `pretraining_data.GeneratePretrainingExamples`: TextExampleGen's TFRecords
                -> sorted GZIP TFRecords of tf.Examples, on the Beam DirectRunner: in-memory
                (1 worker), then multi-processing with 1 and with 2 worker processes
                (worker start-up, TF import included, is part of the measured time).
  Google        `bert.create_pretraining_data` from PyPI `bert-tensorflow` 1.0.4, run
                unmodified through its own `main` after parsing its absl flags (the package
                already imports `tensorflow.compat.v1 as tf`, so no aliasing is needed on
                TF 2.16). Its input is the same documents and sentences, written in its
                format: one sentence a line, a blank line between documents.
  Hugging Face  `tokenizers.BertWordPieceTokenizer` on the vocab.txt (one thread:
                RAYON_NUM_THREADS=1), consecutive sentences of a document packed into
                [CLS] ... [SEP] blocks of 128, then `transformers.DataCollatorForLanguageModeling`
                (return_tensors="np", batches of 256). In-memory arrays only: no NSP, no
                files, so less work than the other two.

tokens/s/core = corpus WordPiece tokens (counted once, with serving's tokenizer) x
dupe_factor / wall seconds / processes doing the work; the CPU seconds of the bench's own
process are printed beside the wall seconds (threads included), so a run that used more than
one core shows. Imports happen before the clocks start. The machine's other load shows in the figures: run it alone if you can.

Usage:
    nice -n 5 .venv/bin/python bench/pretraining_data.py [--dupe_factor 1] [--corpus_copies 1]
        [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # Before `tokenizers` is imported.

from _common import REPO, minilm_dir

MINILM_VOCAB = os.path.join(minilm_dir(), "vocab.txt")

CORPUS_FILES = ("pride_and_prejudice.txt", "wizard_of_oz.txt")
CHAPTER_REGEX = r"^CHAPTER\s+[0-9IVXLC]+\.?$"
MAX_SEQ_LENGTH = 128
MAX_PREDICTIONS = 20
MASKED_LM_PROB = 0.15
SHORT_SEQ_PROB = 0.1
SEED = 12345
HF_BATCH = 256


def _prepare(workdir: Path, corpus_copies: int) -> tuple[list, str, int]:
    """Ingests the corpus; returns (documents, text-example file glob, corpus tokens)."""
    import shutil

    import apache_beam as beam
    import tensorflow as tf

    from bert_keras.vocabulary import read_vocabulary
    from components.text_example_gen import text_ingestion
    from serving.text_encoder import BertTextEncoder

    corpus_dir = REPO / "data" / "corpus"
    paths = [str(corpus_dir / name) for name in CORPUS_FILES]
    if corpus_copies > 1:  # Copies in their own directories, so doc ids differ.
        corpus_dir = workdir / "corpus"
        paths = []
        for copy in range(corpus_copies):
            (corpus_dir / f"copy{copy}").mkdir(parents=True, exist_ok=True)
            for name in CORPUS_FILES:
                paths.append(shutil.copy(REPO / "data" / "corpus" / name, corpus_dir / f"copy{copy}"))
    config = text_ingestion.TextIngestionConfig(document_mode="regex", document_start_regex=CHAPTER_REGEX)
    documents = []
    for path in paths:
        documents.extend(text_ingestion.read_file_documents(path, str(corpus_dir), config)[0])
    with beam.Pipeline() as pipeline:
        _ = pipeline | text_ingestion.IngestTextToExamples(
            inputs=[text_ingestion.SplitInput("train", paths)],
            input_base=str(corpus_dir),
            output_uri=str(workdir / "text_examples"),
            config=config,
            split_names=["train"],
        )
    # Google's input format: one sentence a line, documents separated by a blank line.
    with open(workdir / "google_input.txt", "w", encoding="utf-8") as f:
        f.write("\n\n".join("\n".join(d.sentences) for d in documents) + "\n")

    encoder = BertTextEncoder(read_vocabulary(MINILM_VOCAB), MAX_SEQ_LENGTH, lower_case=True)
    sentences = [s for d in documents for s in d.sentences]
    tokens = int(encoder.tokenize(tf.constant(sentences)).flat_values.shape[0])
    return documents, str(workdir / "text_examples" / "Split-train" / "*"), tokens


def _stats_from_tfrecords(pattern: str, label_feature: str) -> dict:
    import numpy as np
    import tensorflow as tf

    instances = random_next = masked = maskable = 0
    for path in sorted(tf.io.gfile.glob(pattern)):
        compression = "GZIP" if path.endswith(".gz") else ""
        for record in tf.data.TFRecordDataset(path, compression_type=compression):
            features = tf.train.Example.FromString(record.numpy()).features.feature
            instances += 1
            random_next += features[label_feature].int64_list.value[0]
            masked += int(np.sum(features["masked_lm_weights"].float_list.value))
            maskable += sum(features["input_mask"].int64_list.value) - 3
    return {"instances": instances, "random_next": random_next / instances, "masked": masked / maskable}


def run_bertpipe(text_pattern: str, output_dir: Path, dupe_factor: int, options_kwargs: dict) -> tuple[float, dict]:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from bert_keras.vocabulary import read_vocabulary
    from components.pretraining_examples import pretraining_data

    vocabulary = read_vocabulary(MINILM_VOCAB)
    config = pretraining_data.PretrainingConfig(
        max_seq_length=MAX_SEQ_LENGTH,
        max_predictions_per_seq=MAX_PREDICTIONS,
        masked_lm_prob=MASKED_LM_PROB,
        short_seq_prob=SHORT_SEQ_PROB,
        dupe_factor=dupe_factor,
        random_seed=SEED,
    )
    start = time.perf_counter()
    with beam.Pipeline(options=PipelineOptions(**options_kwargs)) as pipeline:
        _ = pipeline | pretraining_data.GeneratePretrainingExamples(
            text_pattern, str(output_dir), vocabulary, True, config, num_shards=2
        )
    seconds = time.perf_counter() - start
    return seconds, _stats_from_tfrecords(str(output_dir / "*.gz"), pretraining_data.NEXT_SENTENCE_LABEL)


def run_google(workdir: Path, dupe_factor: int) -> tuple[float, dict]:
    from bert import create_pretraining_data  # Its import defines its absl flags.

    output = workdir / "google_output.tfrecord"
    create_pretraining_data.FLAGS(
        [
            "create_pretraining_data.py",
            f"--input_file={workdir / 'google_input.txt'}",
            f"--output_file={output}",
            f"--vocab_file={MINILM_VOCAB}",
            "--do_lower_case=True",
            f"--max_seq_length={MAX_SEQ_LENGTH}",
            f"--max_predictions_per_seq={MAX_PREDICTIONS}",
            f"--masked_lm_prob={MASKED_LM_PROB}",
            f"--short_seq_prob={SHORT_SEQ_PROB}",
            f"--dupe_factor={dupe_factor}",
            f"--random_seed={SEED}",
        ]
    )
    start = time.perf_counter()
    create_pretraining_data.main(None)
    seconds = time.perf_counter() - start
    return seconds, _stats_from_tfrecords(str(output), "next_sentence_labels")


def run_hugging_face(documents: list, dupe_factor: int) -> tuple[float, dict]:
    import numpy as np
    from tokenizers import BertWordPieceTokenizer
    from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast

    start = time.perf_counter()
    tokenizer = BertWordPieceTokenizer(MINILM_VOCAB, lowercase=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer._tokenizer,
        unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
    )  # fmt: skip
    collator = DataCollatorForLanguageModeling(
        tokenizer=fast, mlm_probability=MASKED_LM_PROB, return_tensors="np", seed=SEED
    )
    cls_id, sep_id = fast.cls_token_id, fast.sep_token_id
    blocks = []
    for document in documents:
        encodings = tokenizer.encode_batch(document.sentences, add_special_tokens=False)
        ids = [token for encoding in encodings for token in encoding.ids]
        for begin in range(0, len(ids), MAX_SEQ_LENGTH - 2):
            blocks.append({"input_ids": [cls_id, *ids[begin : begin + MAX_SEQ_LENGTH - 2], sep_id]})
    masked = maskable = instances = 0
    for _ in range(dupe_factor):
        for begin in range(0, len(blocks), HF_BATCH):
            batch = collator(blocks[begin : begin + HF_BATCH])
            instances += len(batch["input_ids"])
            masked += int(np.sum(batch["labels"] != -100))
            maskable += int(np.sum(batch["attention_mask"])) - 2 * len(batch["input_ids"])
    seconds = time.perf_counter() - start
    return seconds, {"instances": instances, "random_next": float("nan"), "masked": masked / maskable}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dupe_factor", type=int, default=1)
    parser.add_argument(
        "--corpus_copies", type=int, default=1,
        help="ingest the corpus this many times (as different documents): more work per run, "
        "so that Beam worker start-up weighs less",
    )  # fmt: skip
    parser.add_argument("--workdir", help="keep the outputs here (default: a temporary directory)")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_pretraining_"))
    workdir.mkdir(parents=True, exist_ok=True)

    # Every import up front: the clocks measure the work, not the libraries' start-up.
    import apache_beam  # noqa: F401
    import tensorflow  # noqa: F401
    import tokenizers  # noqa: F401
    import transformers  # noqa: F401
    from bert import create_pretraining_data  # noqa: F401

    load_start = os.getloadavg()
    documents, text_pattern, corpus_tokens = _prepare(workdir, args.corpus_copies)
    tokens = corpus_tokens * args.dupe_factor
    corpus_bytes = args.corpus_copies * sum(
        (REPO / "data" / "corpus" / name).stat().st_size for name in CORPUS_FILES
    )

    runs = []  # (name, processes, seconds, stats)
    for name, processes, options in (
        ("bertpipe Beam DirectRunner in-memory", 1, {"direct_num_workers": 1}),
        ("bertpipe Beam multi-processing, 1 worker", 1,
         {"direct_num_workers": 1, "direct_running_mode": "multi_processing"}),
        ("bertpipe Beam multi-processing, 2 workers", 2,
         {"direct_num_workers": 2, "direct_running_mode": "multi_processing"}),
    ):  # fmt: skip
        output = workdir / name.split(",")[-1].strip().replace(" ", "_").replace("-", "_")
        cpu = time.process_time()
        seconds, stats = run_bertpipe(text_pattern, output, args.dupe_factor, options)
        runs.append((name, processes, seconds, stats | {"cpu": time.process_time() - cpu}))
    cpu = time.process_time()
    seconds, stats = run_google(workdir, args.dupe_factor)
    runs.append(("Google create_pretraining_data.py (bert-tensorflow 1.0.4)", 1, seconds,
                 stats | {"cpu": time.process_time() - cpu}))  # fmt: skip
    cpu = time.process_time()
    seconds, stats = run_hugging_face(documents, args.dupe_factor)
    runs.append(("HF tokenizers + DataCollatorForLanguageModeling (np)", 1, seconds,
                 stats | {"cpu": time.process_time() - cpu}))  # fmt: skip

    print()
    print(
        f"corpus: {args.corpus_copies * len(CORPUS_FILES)} files, {corpus_bytes:,} bytes, {len(documents)} documents (chapters), "
        f"{sum(len(d.sentences) for d in documents):,} sentences, {corpus_tokens:,} WordPiece tokens"
    )
    print(
        f"settings: max_seq_length={MAX_SEQ_LENGTH} max_predictions_per_seq={MAX_PREDICTIONS} "
        f"masked_lm_prob={MASKED_LM_PROB} short_seq_prob={SHORT_SEQ_PROB} dupe_factor={args.dupe_factor} "
        f"seed={SEED}, MiniLM uncased vocab"
    )
    load_end = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} cores; load average (1, 5, 15 min) "
        f"{', '.join(f'{x:.2f}' for x in load_start)} at start, "
        f"{', '.join(f'{x:.2f}' for x in load_end)} at end; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    print()
    print(
        f"{'run':<58} {'wall s':>7} {'cpu s':>6} {'procs':>5} {'tokens/s/core':>13} {'instances':>9} "
        f"{'rand-next':>9} {'masked':>7}"
    )
    per_core = {}
    for name, processes, seconds, stats in runs:
        per_core[name] = tokens / seconds / processes
        print(
            f"{name:<58} {seconds:7.2f} {stats['cpu']:6.2f} {processes:5d} {per_core[name]:13,.0f} {stats['instances']:9,d} "
            f"{stats['random_next']:9.3f} {stats['masked']:7.4f}"
        )
    print(
        "(cpu s: CPU time of this process, all its threads: more than wall s means more than one core "
        "was used; for multi-processing it leaves out the workers. rand-next: share of random-next "
        "pairs; masked: masked positions / maskable tokens)"
    )
    print()
    google, hugging_face = runs[3][0], runs[4][0]
    for name, *_ in runs[:3]:
        print(
            f"{name}: {per_core[name] / per_core[google]:.2f}x Google per core, "
            f"{per_core[name] / per_core[hugging_face]:.2f}x Hugging Face per core"
        )
    # Under contention the runs may get different shares of a core; CPU seconds do not
    # depend on that (the in-process runs only: the workers' CPU is not counted).
    cpu_rate = {name: tokens / stats["cpu"] for name, _, _, stats in runs if stats["cpu"] > 0}
    in_memory = runs[0][0]
    print(
        f"{in_memory}, per CPU second: {cpu_rate[in_memory] / cpu_rate[google]:.2f}x Google, "
        f"{cpu_rate[in_memory] / cpu_rate[hugging_face]:.2f}x Hugging Face "
        f"({cpu_rate[in_memory]:,.0f}, {cpu_rate[google]:,.0f} and {cpu_rate[hugging_face]:,.0f} tokens/CPU-s)"
    )
    one, two = runs[1][2], runs[2][2]
    print(
        f"Beam multi-processing 1 -> 2 workers: wall-clock speed-up {one / two:.2f}x "
        f"(per-core efficiency {one / two / 2:.2f})"
    )
    print(f"outputs kept in {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
