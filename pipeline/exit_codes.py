"""`bertpipe run`'s exit codes, for schedulers (cron, Airflow, Vertex) to act on.

One place, so README.md, the runners and the tests agree:

* 0 `PUSHED_OR_UNCHANGED`: the candidate was blessed and pushed, or it is identical to the
  version already served (an unchanged re-run);
* 3 `NOT_BLESSED`: the pipeline ran to the end but the Evaluator did not bless the candidate
  (below a threshold, or worse than the latest blessed model): nothing was pushed, the
  served model is unchanged;
* 1 `FAILED`: the run could not do its job: a bad config, bad data (anomalies, or more bad
  rows than `data.max_bad_fraction`), a crash. Nothing was pushed.

2 is left to command-line usage errors (argparse's own code), which are not runs.
"""

from __future__ import annotations

PUSHED_OR_UNCHANGED = 0
FAILED = 1
NOT_BLESSED = 3
