"""The experiment tracker: runs notebooks/02_train.ipynb once per experiment through papermill (in-process or on a
Dask cluster), keeps results.csv, resumes after an interruption, and points best/ at the winner before the report.

Everything lives under one reports folder (default `reports/`):

    results.csv               one row per experiment ever recorded: id, parameters, status, error, start, duration,
                              threads, param_count, metrics. Rewritten atomically (temp file + os.replace) on change.
    sweep.json                the latest sweep: its experiment ids in order, swept keys, metric, best id, explain status.
    experiments/<id>/         02_train.ipynb (executed), run.json (this run's row), kernel.log (the kernel's own
                              stdout and stderr, kept off the terminal), and train.py's artifacts.
    best/                     the best experiment's model.keras, metrics.json, params.yaml and figures (relative
                              symlinks, or copies where links are not possible).
    explain/                  03_explain.ipynb run on the best model, with its outputs.
    field_guide/ field_guide.html   05_field_guide.ipynb on the same model and folder, and its page without code.
    report.ipynb report.html  04_report.ipynb executed, and its HTML export.

Errors are values: an experiment that fails for any reason (bad combination, out of memory, dead kernel, lost
worker) becomes a `failed` row with a one-line error, and the sweep goes on. The row of an experiment being
trained says `running`; a rerun treats `running` and `failed` as not done, so a killed sweep simply resumes.
Reading these files back for the report (leaderboard, swept parameters) is `fakelib.report`.

The tracker's modules, in the order a sweep uses them:

    common       output names, the one-line error, atomic JSON, locks and experiment claims
    table        results.csv (`ResultsTable`, `make_row`)
    runs         one notebook run through papermill (`execute_notebook`), one experiment (`Job`, `run_job`)
    executors    in-process or Dask (`open_executor`)
    plan         planning and resume (`prepare_sweep`, `SweepPlan`)
    execution    running a plan (`execute`, `SweepOutcome`)
    final_stage  best/, explain, the field guide, sweep.json and the report (`finalize`, `publish_best`, `run_explain`,
                 `run_report`)
"""

from fakelib.sweep.common import (BEST_FILES, ERROR_LIMIT, LEGACY_EXPLAIN_FILES, TRACKER_OUTPUTS, Claim, Record,
                                  available_cores, higher_is_better, locked, one_line_error, try_claim)
from fakelib.sweep.table import RUN_COLUMNS, ResultsTable, make_row
from fakelib.sweep.runs import (KERNEL, KERNEL_ARGUMENTS, KERNEL_LOG, RUN_FILE, TRAIN_NOTEBOOK, Job, execute_notebook,
                                kernel_manager_logging_to, quiet_papermill, run_job)
from fakelib.sweep.executors import DaskExecutor, LocalExecutor, Runner, open_executor, threads_by_worker
from fakelib.sweep.plan import (NOTEBOOK_ONLY_PARAMETERS, SweepPlan, adopt_legacy_outputs, check_notebook_parameters,
                                check_tracker_outputs, prepare_sweep)
from fakelib.sweep.execution import SweepOutcome, execute, format_record
from fakelib.sweep.final_stage import (EXPLAIN_NOTEBOOK, REPORT_NOTEBOOK, export_html, finalize, publish_best,
                                       run_explain, run_report, select_best)
