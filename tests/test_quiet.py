"""fakelib.quiet: TensorFlow's native start-up lines are dropped from file descriptor 2, every other line kept."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fakelib import paths, quiet

CHATTER = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796223112.656523   18046 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n"
    "I0000 00:00:1796224131.769219   22132 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    "available CPU instructions in performance-critical operations.\n"
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate "
    "compiler flags.\n"
)


def test_native_chatter_is_dropped_and_other_lines_are_replayed(capfd):
    with quiet.filtered_native_stderr():
        os.write(2, (CHATTER + "E0000 00:00:1.0 a real native error\nplain line from a library\n").encode())
    error = capfd.readouterr().err
    assert error == "E0000 00:00:1.0 a real native error\nplain line from a library\n"


def test_importing_tensorflow_quietly_prints_nothing_where_a_plain_import_prints_its_chatter():
    def stderr_of(code: str) -> str:
        done = subprocess.run([sys.executable, "-c", code], cwd=paths.ROOT, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert "oneDNN" in stderr_of("import tensorflow; tensorflow.constant(0)")  # the chatter this filter is for
    assert stderr_of("from fakelib.quiet import import_tensorflow_quietly; import_tensorflow_quietly(); "
                     "import_tensorflow_quietly(); import tensorflow; tensorflow.constant(1)") == ""


def test_a_notebook_run_with_the_kernel_argument_shows_no_tensorflow_line(tmp_path, monkeypatch):
    import nbformat
    import papermill

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import tensorflow\ntensorflow.constant(0)\nprint('ran')")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, str(tmp_path / "tf.ipynb"))
    # ipykernel forwards native stderr into the notebook, as it does for a person, only outside pytest
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)

    def printed(arguments: list[str]) -> str:
        done = papermill.execute_notebook(str(tmp_path / "tf.ipynb"), str(tmp_path / "out.ipynb"),
                                          kernel_name="python3", progress_bar=False, cwd=str(paths.ROOT),
                                          extra_arguments=arguments)
        return "".join(output.get("text", "") for output in done.cells[0].outputs)

    assert "oneDNN" in printed(["--IPKernelApp.log_level=ERROR"])  # what a plain kernel shows
    assert printed(["--IPKernelApp.log_level=ERROR", quiet.KERNEL_ARGUMENT]) == "ran\n"



@pytest.mark.parametrize("name", sorted(quiet.TENSORFLOW_ENVIRONMENT))
def test_importing_fakelib_leaves_the_environment_alone_and_entry_points_set_tensorflow_defaults(name):
    def value_after_entry_point(preset: str | None) -> str:
        environment = {key: value for key, value in os.environ.items() if key != name}
        environment.update({name: preset} if preset is not None else {})
        code = (f"import os, fakelib, fakelib.models, fakelib.sweep, fakelib.quiet; "
                f"assert os.environ.get('{name}') == os.environ.get('PRESET'), 'changed at import'; "
                f"fakelib.quiet.import_tensorflow_quietly(); print(os.environ['{name}'])")
        if preset is not None:
            environment["PRESET"] = preset
        done = subprocess.run([sys.executable, "-c", code], cwd=paths.ROOT, capture_output=True, text=True,
                              timeout=120, env=environment)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert value_after_entry_point(None) == quiet.TENSORFLOW_ENVIRONMENT[name]  # set by the entry point, not the import
    assert value_after_entry_point("0") == "0"  # a user's own value is left alone


def test_entry_points_turn_onednn_on_where_tensorflow_leaves_it_off():
    """The CLI's TensorFlow runs its oneDNN kernels even with the variable unset (TensorFlow prints its notice
    only when they are on; on an AVX2-only CPU a plain import leaves them off and prints nothing)."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL")}
    code = ("import os, sys; from fakelib.quiet import tensorflow_environment; tensorflow_environment(); "
            "import tensorflow; tensorflow.constant(0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=paths.ROOT, capture_output=True, text=True,
                          timeout=120, env=environment)
    assert done.returncode == 0, done.stderr
    assert "oneDNN custom operations are on" in done.stderr
