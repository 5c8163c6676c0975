"""The serving export in float32 and in bfloat16 (with and without XLA), side by side.

    .venv/bin/python bench/export_precision.py \\
        --weights build/pipelines/sst2_demo/Trainer/model/<n>/Format-Keras/model.weights.h5

Builds the SST-2 classifier of `configs/demo_sst2.yaml` (MiniLM-L6, mean pooling, 64
tokens), loads the fine-tuned weights the Trainer wrote beside its SavedModel, and exports
the same weights with `serving.precision` float32 and mixed_bfloat16, each with and without
`serving.jit_compile`. Each SavedModel is loaded (`tf.saved_model.load`) and its
`serving_default` signature scores the eval CSV in requests of `--batch-size` sentences:
once to warm up (XLA compiles each new request shape here), then `--passes` timed passes.
Prints, per export: accuracy, agreement of its labels with the float32 export's, the
first pass's and the steady rate in sentences/s, and the ratios to float32; the load average
before and after (figures from a loaded machine are not throughput figures).

`--task ner` does the same for `configs/demo_ner.yaml`'s token classifier (the WNUT-17
entity types, 64 tokens) on `data/wnut17/eval.conll` through `from_examples`: entity F1
(seqeval's, `pipeline.tasks.entity_metrics`) instead of accuracy, agreement of the word tags.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time

import _common  # noqa: F401  (before TensorFlow: quiet logs, Keras on TensorFlow)
import numpy as np

VARIANTS = (("float32", False), ("float32", True), ("mixed_bfloat16", False), ("mixed_bfloat16", True))


def load_rows(path: str) -> tuple[list[str], list[int]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [row["sentence"] for row in rows], [int(row["label"]) for row in rows]


NER_TYPES = ["person", "location", "group", "creative-work", "corporation", "product"]


def load_conll(path: str) -> list[tuple[list[str], list[str]]]:
    """(words, tags) of each sentence, read by the project's CoNLL reader (which the NER
    ingestion uses); a bad line stops the bench."""
    from components.conll_example_gen.conll import ConllConfig, ConllFormatError, read_conll

    sentences, bad = read_conll(path, ConllConfig(entity_types=tuple(NER_TYPES)))
    if bad:
        raise ConllFormatError(bad)
    return [(sentence.tokens, sentence.tags) for sentence in sentences]


def export_ner(weights: str, precision: str, jit_compile: bool, export_dir: str) -> None:
    from bert_keras.checkpoint import load_backbone
    from bert_keras.token_classifier import build_token_classifier
    from pipeline.tasks.iob import tag_names
    from serving.token_classification_export import export_token_classifier
    from serving.word_encoder import BertWordEncoder

    tags = tag_names(NER_TYPES)
    backbone, vocabulary, lower_case = load_backbone(_common.minilm_dir(), dropout=0.1)
    model = build_token_classifier(backbone, num_labels=len(tags))
    model.load_weights(weights)
    export_token_classifier(model, BertWordEncoder(vocabulary, 64, lower_case=lower_case), tags,
                            export_dir, precision=precision, jit_compile=jit_compile)


def score_ner(export_dir: str, sentences: list[list[str]], batch_size: int, passes: int) -> dict:
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the tokenizer's ops)

    signature = tf.saved_model.load(export_dir).signatures["from_examples"]
    examples = [tf.train.Example(features=tf.train.Features(feature={"tokens": tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[w.encode() for w in words]))})).SerializeToString()
        for words in sentences]
    starts = range(0, len(examples), batch_size)

    def one_pass() -> tuple[float, list[list[str]]]:
        start, tags = time.perf_counter(), []
        for i in starts:
            labels = signature(examples=tf.constant(examples[i:i + batch_size]))["token_labels"]
            tags += [[t.decode() for t in row[:len(words)]]
                     for row, words in zip(labels.numpy(), sentences[i:i + batch_size],
                                           strict=True)]
        return time.perf_counter() - start, tags

    first, tags = one_pass()
    steady = min(one_pass()[0] for _ in range(passes))
    return {"labels": tags, "first": len(sentences) / first, "steady": len(sentences) / steady}


def main_ner(args: argparse.Namespace) -> None:
    from pipeline.tasks.entity_metrics import entity_scores

    rows = load_conll(args.eval)
    sentences, gold = [words for words, _ in rows], [tags for _, tags in rows]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision, jit_compile in VARIANTS:
            name = precision + (" + XLA" if jit_compile else "")
            export_dir = os.path.join(tmp, name.replace(" ", "").replace("+", "_"))
            export_ner(args.weights, precision, jit_compile, export_dir)
            results[name] = score_ner(export_dir, sentences, args.batch_size, args.passes)
            print(f"scored: {name}", flush=True)
    reference = [t for row in results["float32"]["labels"] for t in row]
    print(f"\n{len(sentences)} eval sentences ({len(reference)} words), {args.batch_size} per "
          f"request, {os.cpu_count()} CPUs")
    print(f"{'export':<24}{'entity F1':>10}{'tags agree':>12}{'first s/s':>11}"
          f"{'steady s/s':>12}{'vs float32':>12}")
    for name, result in results.items():
        f1 = entity_scores(gold, result["labels"])["f1"]
        flat = [t for row in result["labels"] for t in row]
        agreement = float(np.mean([a == b for a, b in zip(flat, reference, strict=True)]))
        print(f"{name:<24}{f1:>10.4f}{agreement:>12.2%}{result['first']:>11.1f}"
              f"{result['steady']:>12.1f}{result['steady'] / results['float32']['steady']:>11.2f}x")
    print(f"load average after: {os.getloadavg()}")


def export(weights: str, precision: str, jit_compile: bool, export_dir: str) -> None:
    from bert_keras.checkpoint import load_backbone
    from bert_keras.classifier import build_text_classifier
    from serving.export import export_saved_model
    from serving.text_encoder import BertTextEncoder

    backbone, vocabulary, lower_case = load_backbone(_common.minilm_dir(), dropout=0.1)
    model = build_text_classifier(backbone, num_classes=2, pooling="mean")
    model.load_weights(weights)
    export_saved_model(model, BertTextEncoder(vocabulary, 64, lower_case=lower_case),
                       ["negative", "positive"], export_dir, text_feature="sentence",
                       precision=precision, jit_compile=jit_compile)


def score(export_dir: str, texts: list[str], batch_size: int, passes: int) -> dict:
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the tokenizer's ops)

    signature = tf.saved_model.load(export_dir).signatures["serving_default"]
    batches = [tf.constant(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]

    def one_pass() -> tuple[float, list[str]]:
        start, labels = time.perf_counter(), []
        for batch in batches:
            labels += [label.decode() for label in signature(text=batch)["label"].numpy()]
        return time.perf_counter() - start, labels

    first, labels = one_pass()
    steady = min(one_pass()[0] for _ in range(passes))
    return {"labels": labels, "first": len(texts) / first, "steady": len(texts) / steady}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="the Trainer's model.weights.h5")
    parser.add_argument("--task", choices=("sst2", "ner"), default="sst2")
    parser.add_argument("--eval", help="default: data/sst2/eval/eval.csv, or "
                        "data/wnut17/eval.conll for --task ner")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--passes", type=int, default=3, help="timed passes (best is kept)")
    args = parser.parse_args()

    print(f"load average before: {os.getloadavg()}", flush=True)
    if args.task == "ner":
        args.eval = args.eval or str(_common.REPO / "data/wnut17/eval.conll")
        return main_ner(args)
    args.eval = args.eval or str(_common.REPO / "data/sst2/eval/eval.csv")
    texts, gold = load_rows(args.eval)
    classes = ["negative", "positive"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision, jit_compile in VARIANTS:
            name = precision + (" + XLA" if jit_compile else "")
            export_dir = os.path.join(tmp, name.replace(" ", "").replace("+", "_"))
            export(args.weights, precision, jit_compile, export_dir)
            results[name] = score(export_dir, texts, args.batch_size, args.passes)
            print(f"scored: {name}", flush=True)
    reference = results["float32"]
    print(f"\n{len(texts)} eval sentences, {args.batch_size} per request, "
          f"{os.cpu_count()} CPUs")
    print(f"{'export':<24}{'accuracy':>9}{'agreement':>11}{'first s/s':>11}"
          f"{'steady s/s':>12}{'vs float32':>12}")
    for name, result in results.items():
        predicted = [classes.index(label) for label in result["labels"]]
        accuracy = float(np.mean(np.array(predicted) == np.array(gold)))
        agreement = float(np.mean([a == b for a, b in zip(result["labels"],
                                                          reference["labels"], strict=True)]))
        print(f"{name:<24}{accuracy:>9.2%}{agreement:>11.2%}{result['first']:>11.1f}"
              f"{result['steady']:>12.1f}{result['steady'] / reference['steady']:>11.2f}x")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
