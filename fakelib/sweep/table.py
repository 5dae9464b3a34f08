"""results.csv: one row per experiment ever recorded, read back and rewritten atomically under a lock."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fakelib.atomic import write_text
from fakelib.config import KEY_SECTIONS, ConfigError, ExperimentConfig
from fakelib.report import PARAMETER_KEYS
from fakelib.sweep.common import Record, locked


RUN_COLUMNS = ("status", "error", "start", "duration", "threads", "param_count")


def _cell(value: Any) -> str:
    """One results.csv cell: lists and dicts as JSON, None as empty, floats at full precision."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


# ------------------------------------------------------------------------------------------- results table


class ResultsTable:
    """results.csv in memory: one row (all cells strings) per experiment id, in file order; saves are atomic.

    Several sweeps may share one file: each save takes the lock `.results.csv.lock`, reads the file again and
    writes it back with only this table's own changes applied (read-merge-write), so no sweep loses another's rows.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: dict[str, dict[str, str]] = self._read()
        self._changed: set[str] = set()

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.lock")

    def _read(self) -> dict[str, dict[str, str]]:
        rows: dict[str, dict[str, str]] = {}
        if self.path.is_file():
            with self.path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                if "experiment_id" not in (reader.fieldnames or []):
                    raise ConfigError(f"{self.path} has no experiment_id column; move it away to start a new table")
                for row in reader:
                    rows[row["experiment_id"]] = {key: value or "" for key, value in row.items()}
        return rows

    def get(self, experiment_id: str) -> dict[str, str] | None:
        return self.rows.get(experiment_id)

    def put(self, row: Mapping[str, Any], save: bool = True) -> None:
        """Insert or replace the row of `row["experiment_id"]` and (by default) save the file."""
        experiment_id = str(row["experiment_id"])
        self.rows[experiment_id] = {key: _cell(value) for key, value in row.items()}
        self._changed.add(experiment_id)
        if save:
            self.save()

    def refresh(self) -> None:
        """Read the rows other sweeps wrote meanwhile (this table's unsaved changes stay)."""
        with locked(self.lock_path):
            self._merge()

    def _merge(self) -> None:
        mine = {experiment_id: self.rows[experiment_id] for experiment_id in self._changed}
        self.rows = {**self._read(), **mine}

    def columns(self) -> list[str]:
        """experiment_id, parameters, run facts, then metrics in first-seen order."""
        fixed = ["experiment_id", *PARAMETER_KEYS, *RUN_COLUMNS]
        seen = {key: None for row in self.rows.values() for key in row}
        if not seen:
            return fixed
        return [key for key in fixed if key in seen] + [key for key in seen if key not in fixed]

    def save(self, merge: bool = True) -> None:
        """Under the lock, merge this table's changes into the file's rows and write them atomically.

        Args:
            merge: False writes this table's rows as they are, dropping what the file holds (repairs, tests).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.lock_path):
            if merge:
                self._merge()
            self._write()
            self._changed.clear()

    def _write(self) -> None:
        """The whole table to a temporary file beside results.csv, then renamed over the old one."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns(), restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows.values())
        write_text(self.path, buffer.getvalue(), durable=True)


def make_row(config: ExperimentConfig, record: Mapping[str, Any]) -> Record:
    """The results.csv row of one experiment: its parameters, the run facts of `record`, and its metrics."""
    flat = config.to_flat()
    metrics = record.get("metrics") or {}
    row: Record = {"experiment_id": config.experiment_id, **{key: flat[key] for key in PARAMETER_KEYS}}
    row.update(status=record.get("status", ""), error=record.get("error", ""), start=record.get("start", ""),
               duration=record.get("duration"), threads=record.get("threads"),
               param_count=metrics.get("param_count"))
    for key, value in metrics.items():
        # metrics.json repeats a few parameters (e.g. `model`) and the id: keep one column each
        if key not in row and key not in KEY_SECTIONS:
            row[key] = value
    return row
