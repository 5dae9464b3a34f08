"""Issue 13, the hardening pass: each case ends in one line or one row, with the documented exit status, and
nothing the user wrote is lost. Small and fast: tiny generated images and loopback servers only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fakelib import paths


def fakelib_cli(*args: str, cwd: Path = paths.ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fakelib", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def assert_one_line_refusal(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------- 7. non-finite numbers


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_float_params_are_rejected(value):
    from fakelib.config import ConfigError, ExperimentConfig

    with pytest.raises(ConfigError, match="model.dropout.*finite"):
        ExperimentConfig.from_flat({"dropout": value})


def test_nan_from_yaml_params_is_one_line(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("model:\n  dropout: .nan\n")
    result = fakelib_cli("train", "--params", str(params), "--out", str(tmp_path / "out"))
    assert_one_line_refusal(result)
    assert "model.dropout" in result.stderr
