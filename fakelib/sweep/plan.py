"""Planning and resume: params.yaml and the reports folder checked, and the experiments still to run chosen
(finished ones skipped, a row lost by a killed sweep recovered from its run.json)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fakelib import paths
from fakelib.ownership import RECORD, WrittenFiles
from fakelib.config import MAX_EXPERIMENTS, NON_RESULT_KEYS, ConfigError, ExperimentConfig, Params, load_params
from fakelib.report import RESULTS_FILE, SUMMARY_FILE
from fakelib.sweep.common import BEST_FILES, LEGACY_EXPLAIN_FILES, TRACKER_OUTPUTS
from fakelib.sweep.runs import RUN_FILE, TRAIN_NOTEBOOK, Job
from fakelib.sweep.table import ResultsTable, make_row


# Parameters the training notebook takes besides the experiment's own keys.
NOTEBOOK_ONLY_PARAMETERS = ("output_dir",)


# --------------------------------------------------------------------------------------------------- the plan


@dataclass
class SweepPlan:
    """A validated sweep: every experiment in order, the ones to run now, and where everything goes."""

    params: Params
    params_path: Path
    reports_dir: Path
    experiments_dir: Path
    experiments: list[ExperimentConfig]
    selected: list[ExperimentConfig]
    skipped: list[str]
    table: ResultsTable
    force: bool = False

    def job(self, config: ExperimentConfig) -> Job:
        flat = config.to_flat()
        parameters = {key: value for key, value in flat.items() if key not in NON_RESULT_KEYS}
        return Job(experiment_id=config.experiment_id, parameters=parameters,
                   output_dir=str(self.experiments_dir / config.experiment_id), threads=config.train.threads)


def check_notebook_parameters(experiments: Sequence[ExperimentConfig], notebook: Path = TRAIN_NOTEBOOK) -> None:
    """Every key an experiment sets must be a parameter of the training notebook (`papermill.inspect_notebook`).

    Raises:
        ConfigError: a key the notebook does not take (one line naming it and the notebook).
    """
    import papermill

    known = set(papermill.inspect_notebook(str(notebook)))
    missing = [name for name in NOTEBOOK_ONLY_PARAMETERS if name not in known]
    for config in experiments:
        missing += [key for key in config.to_flat() if key not in known and key not in missing]
    if missing:
        raise ConfigError(f"{notebook.name} has no parameter(s) {', '.join(sorted(missing))}; "
                          f"its parameters: {', '.join(sorted(known))}")


def is_done(row: Mapping[str, str] | None, experiment_dir: Path) -> bool:
    return bool(row) and row.get("status") == "done" and (experiment_dir / "metrics.json").is_file()


def _recover(table: ResultsTable, config: ExperimentConfig, experiment_dir: Path) -> None:
    """Adopt a finished run whose results.csv row was lost (the process died between the two writes)."""
    if is_done(table.get(config.experiment_id), experiment_dir):
        return
    try:
        record = json.loads((experiment_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return
    if record.get("status") == "done" and (experiment_dir / "metrics.json").is_file():
        table.put(make_row(config, record), save=False)


def _match_only(only: Sequence[str], experiments: Sequence[ExperimentConfig]) -> set[str]:
    """Experiment ids named by `only` (a unique prefix is enough)."""
    ids = [config.experiment_id for config in experiments]
    chosen = set()
    for wanted in only:
        matches = [experiment_id for experiment_id in ids if experiment_id.startswith(wanted)]
        if len(matches) != 1:
            problem = "matches no experiment" if not matches else f"is ambiguous ({', '.join(matches)})"
            raise ConfigError(f"only: {wanted!r} {problem}; this sweep's ids: {', '.join(ids)}")
        chosen.add(matches[0])
    return chosen


def prepare_sweep(params_path: str | Path | None = None, reports_dir: str | Path | None = None, force: bool = False,
                  only: Sequence[str] = (), notebook: Path = TRAIN_NOTEBOOK,
                  max_experiments: int = MAX_EXPERIMENTS) -> SweepPlan:
    """Load and validate params, check them and the reports folder, and decide what to run. Writes nothing (but
    records, once, the outputs an older tracker left; see `adopt_legacy_outputs`).

    Args:
        params_path: the params file (default: the repository's params.yaml).
        reports_dir: the reports folder; when given, experiments go to `<reports_dir>/experiments` (otherwise
            to `tracker.experiments_dir` of the params).
        force: rerun experiments that are already done.
        only: run just these experiment ids (unique prefixes accepted); done ones still need `force`.
        notebook: the training notebook.
        max_experiments: refuse a sweep with more combinations than this.

    Raises:
        ConfigError: invalid params, a key the notebook lacks, an unknown `only` id, or a sweep larger than
            `max_experiments` (one line).
        FileNotFoundError: no params file.
    """
    params_path = Path(params_path) if params_path is not None else paths.PARAMS
    params = load_params(params_path, max_experiments)
    experiments = params.experiments()
    check_notebook_parameters(experiments, notebook)
    if reports_dir is None:
        reports, experiments_dir = paths.REPORTS, paths.resolve(params.tracker.experiments_dir)
    else:
        reports = paths.resolve(reports_dir, Path.cwd())
        experiments_dir = reports / "experiments"
    chosen = _match_only(only, experiments) if only else None
    check_tracker_outputs(reports)
    table = ResultsTable(reports / RESULTS_FILE)
    selected, skipped = [], []
    for config in experiments:
        experiment_dir = experiments_dir / config.experiment_id
        _recover(table, config, experiment_dir)
        if chosen is not None and config.experiment_id not in chosen:
            continue
        if not force and is_done(table.get(config.experiment_id), experiment_dir):
            skipped.append(config.experiment_id)
        else:
            selected.append(config)
    return SweepPlan(params, params_path.resolve(), reports, experiments_dir, experiments, selected, skipped, table,
                     force)


def check_tracker_outputs(reports_dir: Path) -> None:
    """Refuse a reports folder where best/, explain/ or the report hold a file the tracker did not write.

    Raises:
        ConfigError: one line naming the first such file (the tracker would replace or remove it).
    """
    adopt_legacy_outputs(reports_dir)
    written = WrittenFiles(reports_dir)
    foreign = written.foreign([reports_dir / name for name in TRACKER_OUTPUTS])
    if foreign is not None:
        raise ConfigError(f"{foreign} was not written by the tracker, which would replace or remove it; "
                          "move it out of the reports folder")


def adopt_legacy_outputs(reports_dir: Path) -> None:
    """Record as the tracker's the outputs an older tracker left before ownership records existed.

    Only in a folder with a sweep.json and no record yet, and only the names the tracker itself writes there.
    """
    if (reports_dir / RECORD).exists() or not (reports_dir / SUMMARY_FILE).is_file():
        return
    candidates = [reports_dir / "best" / name for name in BEST_FILES]
    candidates += [reports_dir / "explain" / name for name in LEGACY_EXPLAIN_FILES]
    candidates += [reports_dir / name for name in ("report.ipynb", "report.html", "report.json")]
    WrittenFiles(reports_dir).add([path for path in candidates if path.is_symlink() or path.is_file()])
