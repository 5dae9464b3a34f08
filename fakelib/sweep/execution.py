"""Running a plan: each experiment claimed, run by an executor and recorded in results.csv as it starts and
finishes; Ctrl-C marks the ones in flight as interrupted, so a rerun resumes."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fakelib.config import ExperimentConfig
from fakelib.report import test_metric_for
from fakelib.sweep.common import Claim, Record, timestamp, try_claim
from fakelib.sweep.executors import Runner, open_executor
from fakelib.sweep.plan import SweepPlan, is_done
from fakelib.sweep.runs import Job, run_job
from fakelib.sweep.table import ResultsTable, make_row


# ------------------------------------------------------------------------------------------------ execution


@dataclass
class SweepOutcome:
    """What one invocation did: the records it produced, and whether it stopped before running everything."""

    records: list[Record] = field(default_factory=list)
    not_run: int = 0
    stopped_early: bool = False
    elsewhere: list[str] = field(default_factory=list)  # run (or being run) by another sweep meanwhile

    @property
    def failures(self) -> int:
        return sum(record["status"] != "done" for record in self.records)


def format_record(record: Mapping[str, Any], metric: str) -> str:
    """One line per finished experiment: id, status, validation and test score, duration (and the error)."""
    metrics = record.get("metrics") or {}
    test_metric = test_metric_for(metric)

    def score(key: str) -> str:
        value = metrics.get(key)
        return f"{key}={value:.4f}" if isinstance(value, (int, float)) else f"{key}=-"

    line = (f"{record['experiment_id']}  {record['status']:<6}  {score(metric)}  {score(test_metric)}  "
            f"{float(record.get('duration') or 0):.0f}s")
    return line + (f"  {record['error']}" if record.get("error") else "")


def execute(plan: SweepPlan, workers: int = 1, scheduler: str | None = None, max_failures: int | None = None,
            runner: Runner = run_job, progress: bool = True, echo: bool = True) -> SweepOutcome:
    """Run the plan's selected experiments, recording each row in results.csv as it starts and finishes.

    Args:
        plan: from `prepare_sweep`.
        workers: concurrent experiments on a local Dask cluster (1: sequential, in-process).
        scheduler: address of an existing Dask scheduler (overrides `workers`).
        max_failures: stop submitting experiments once this many failed in this invocation.
        runner: the function run per job (tests substitute a fast fake; it must be importable for Dask).
        progress: show the progress bar.
        echo: print one line per finished experiment.

    Raises:
        KeyboardInterrupt: after marking the experiments in flight as failed ("interrupted"); rerun to resume.
    """
    from tqdm.auto import tqdm

    table, outcome = plan.table, SweepOutcome()
    table.save()  # recovered rows, and the file exists even before the first experiment finishes
    configs = {config.experiment_id: config for config in plan.selected}
    in_flight: dict[str, float] = {}
    claims: dict[str, Claim] = {}
    if not plan.selected:
        return outcome

    def on_start(job: Job) -> bool:
        claim = _claim_unless_elsewhere(plan, job.experiment_id)
        if claim is None:
            outcome.elsewhere.append(job.experiment_id)
            bar.update()
            if echo:
                bar.write(f"{job.experiment_id}  skipped: run by another sweep on {plan.reports_dir}")
            return False
        claims[job.experiment_id] = claim
        in_flight[job.experiment_id] = time.time()
        table.put(make_row(configs[job.experiment_id], {"status": "running", "start": timestamp(time.time()),
                                                          "threads": job.threads or None}))
        return True

    def should_stop() -> bool:
        return max_failures is not None and outcome.failures >= max_failures

    bar = tqdm(total=len(plan.selected), unit="experiment", desc="sweep", disable=not progress, dynamic_ncols=True)
    try:
        with open_executor(workers, scheduler) as executor:
            for job, record in executor.run([plan.job(config) for config in plan.selected], runner, on_start,
                                            should_stop):
                in_flight.pop(job.experiment_id, None)
                table.put(make_row(configs[job.experiment_id], record))
                claims.pop(job.experiment_id).release()  # after the row: another sweep then sees it done
                outcome.records.append(record)
                bar.update()
                if echo:
                    bar.write(format_record(record, plan.params.tracker.metric))
    except KeyboardInterrupt:
        _mark_interrupted(table, configs, in_flight)
        raise
    finally:
        bar.close()
        for claim in claims.values():
            claim.release()
    outcome.not_run = len(plan.selected) - len(outcome.records) - len(outcome.elsewhere)
    outcome.stopped_early = outcome.not_run > 0
    return outcome


def _claim_unless_elsewhere(plan: SweepPlan, experiment_id: str) -> Claim | None:
    """Claim an experiment, unless another sweep is running it or finished it since this sweep was planned."""
    claim = try_claim(plan.experiments_dir, experiment_id)
    if claim is None:
        return None
    plan.table.refresh()
    if not plan.force and is_done(plan.table.get(experiment_id), plan.experiments_dir / experiment_id):
        claim.release()
        return None
    return claim


def _mark_interrupted(table: ResultsTable, configs: Mapping[str, ExperimentConfig],
                      in_flight: Mapping[str, float]) -> None:
    for experiment_id, started in in_flight.items():
        table.put(make_row(configs[experiment_id], {
            "status": "failed", "error": "KeyboardInterrupt: interrupted by the user; rerun to resume",
            "start": timestamp(started), "duration": round(time.time() - started, 2)}), save=False)
    table.save()
