"""Builds the SST-2 samples shipped in data/sst2/ from the GLUE SST-2 training split.

SST-2's training split holds every phrase of every training sentence, so a random slice of
it leaks: a "held-out" sentence's own phrases would sit in the training data. Here held-out
rows are whole sentences (rows that are no substring of another row), and every row that is
a substring of a held-out sentence is removed from the training pool.

    python data/make_sst2_sample.py ../shared/data/sst2/train.tsv data/sst2
    python data/make_sst2_sample.py --full ../shared/data/sst2/train.tsv build/data/sst2_full

`--full` keeps every training row that does not leak into the held-out sentences
(configs/sst2_full.yaml), with the same eval and held-out slices.
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

SEED = 20261123
EVAL_SIZE = 872  # the size of GLUE's own SST-2 validation split
HOLDOUT_SIZE = 872
TRAIN_SIZE = 20000
FULL_MIN_WORDS = 8


def read_tsv(path: Path) -> list[tuple[str, int]]:
    with path.open(encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(sentence.strip(), int(label)) for sentence, label in rows[1:]]


def write_csv(path: Path, rows: list[tuple[str, int]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence", "label"])
        writer.writerows(rows)


def main(source: str, out_dir: str, full: bool = False) -> None:
    rows = read_tsv(Path(source))
    rng = random.Random(SEED)
    long_rows = [r for r in rows if len(r[0].split()) >= FULL_MIN_WORDS]
    # Whole sentences: long rows that are not a phrase of a longer row.
    by_length = sorted(long_rows, key=lambda r: -len(r[0]))
    joined = "\n".join(r[0] for r in by_length)
    whole = [r for r in long_rows if joined.count(r[0]) == 1]
    rng.shuffle(whole)
    held = whole[: EVAL_SIZE + HOLDOUT_SIZE]
    eval_rows, holdout_rows = held[:EVAL_SIZE], held[EVAL_SIZE:]
    held_text = "\n".join(r[0] for r in held)
    pool = [r for r in rows if r[0] and r[0] not in held_text]
    rng.shuffle(pool)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train").mkdir(exist_ok=True)
    (out / "eval").mkdir(exist_ok=True)
    train_rows = pool if full else pool[:TRAIN_SIZE]
    write_csv(out / "train" / "train.csv", train_rows)
    write_csv(out / "eval" / "eval.csv", eval_rows)
    write_csv(out / "holdout.csv", holdout_rows)
    print(f"pool {len(pool)} rows; wrote train {len(train_rows)}, eval {len(eval_rows)}, "
          f"holdout {len(holdout_rows)} to {out}")


if __name__ == "__main__":
    args = sys.argv[1:]
    full = "--full" in args
    if full:
        args.remove("--full")
    main(args[0], args[1], full=full)
