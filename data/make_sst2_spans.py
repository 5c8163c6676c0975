"""Cuts data/sst2_spans/span-{1,2,3}/ from the SST-2 sample, for configs/scheduled_sst2.yaml.

Each span is one "data drop" of a scheduled pipeline: 2,000 training rows (consecutive slices
of data/sst2/train/train.csv) and 290 eval rows (slices of data/sst2/eval/eval.csv). Span 3
also gets one malformed row (an unquoted comma: three columns where the header has two), the
kind of row a nightly run must quarantine rather than die on.

    python data/make_sst2_spans.py
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent
SPANS, TRAIN_ROWS, EVAL_ROWS = 3, 2000, 290
BAD_ROW = "a fine cast, wasted on a thin script,0\n"


def main() -> None:
    train = (DATA / "sst2/train/train.csv").read_text(encoding="utf-8").splitlines(True)
    evaluation = (DATA / "sst2/eval/eval.csv").read_text(encoding="utf-8").splitlines(True)
    header = train[0]
    for span in range(1, SPANS + 1):
        folder = DATA / "sst2_spans" / f"span-{span}"
        rows = {
            "train": train[1 + (span - 1) * TRAIN_ROWS: 1 + span * TRAIN_ROWS],
            "eval": evaluation[1 + (span - 1) * EVAL_ROWS: 1 + span * EVAL_ROWS],
        }
        if span == SPANS:
            rows["train"].insert(TRAIN_ROWS // 2, BAD_ROW)
        for split, lines in rows.items():
            (folder / split).mkdir(parents=True, exist_ok=True)
            (folder / split / f"{split}.csv").write_text(header + "".join(lines),
                                                         encoding="utf-8")


if __name__ == "__main__":
    main()
