"""Suite-wide pytest settings: the order test files start in.

`make test` runs files on two pytest-xdist workers (`--dist loadfile --no-loadscope-reorder`:
a file's tests on one worker, files handed out in collection order as workers free up;
xdist's default order instead puts the files with the most tests first). The end-to-end files that
run whole pipelines take 4 to 9 minutes each; if one of them starts last, one worker idles
while the other finishes it. Starting the longest files first (longest-processing-time-first
scheduling) keeps both workers busy to the end. The weights are those files' durations in a
fresh-clone run (BUILD.md); files not listed keep their order after them.
"""

from __future__ import annotations

# file (relative to the repository root) -> seconds, roughly, on 2 cores
LONG_FILES = {
    "tests/test_finetune_pipeline.py": 520,
    "tests/test_ner_pipeline.py": 480,
    "tests/test_scheduled_runs.py": 330,
    "tests/test_qa_pipeline.py": 290,
    "tests/test_pretrain_pipeline.py": 270,
    "tests/test_runners.py": 260,
    "tests/serving/test_export_precision.py": 250,
}


def pytest_collection_modifyitems(session, config, items) -> None:
    def weight(item) -> int:
        path = item.path.relative_to(config.rootpath).as_posix()
        return LONG_FILES.get(path, 0)

    items.sort(key=weight, reverse=True)  # stable: the rest keep their order
