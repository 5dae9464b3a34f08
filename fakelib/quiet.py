"""TensorFlow imported with its native start-up lines filtered out, for entry points: the CLI, run_all.py, kernels.

TensorFlow 2.21 writes an absl pre-init warning, a oneDNN notice and CPU-feature notices straight to file
descriptor 2, whatever TF_CPP_MIN_LOG_LEVEL says (measured: 3 hides none of them). In a terminal they bury a
command's one-line error; in a Jupyter kernel the kernel forwards descriptor 2 to the page, so they appear in
every executed notebook and on the served explorer. Turning oneDNN off (TF_ENABLE_ONEDNN_OPTS=0) would silence
one line and make training 4-5x slower, so instead descriptor 2 is captured while TensorFlow starts and every
other line is replayed. Importing this module (or fakelib) changes nothing, the environment included; only the
entry points call `quiet_tensorflow_logging` and `import_tensorflow_quietly`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# The absl pre-init warning, glog-style "I0000 00:00:..." / "W0000 ..." lines (oneDNN, CPU features), the
# second line of the CPU-feature notice, which has no prefix, and TF Lite's note on its CPU delegate.
NATIVE_CHATTER = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|[IW]\d{4} \d\d:\d\d:\d\d"
                            r"|To enable the following instructions: .*rebuild TensorFlow"
                            r"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU)")  # TF Lite (fakelib.landmarks)


@contextlib.contextmanager
def filtered_native_stderr() -> Iterator[None]:
    """Capture file descriptor 2 for the block; afterwards replay every line except TensorFlow's chatter.

    The lines are replayed through `sys.stderr`, which a Jupyter kernel shows in the cell's output as usual.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if not NATIVE_CHATTER.match(line):
                    print(line, file=sys.stderr)


def quiet_tensorflow_logging() -> None:
    """Set TF_CPP_MIN_LOG_LEVEL=2 for this process and those it starts (kernels, Dask workers), unless it is set.

    TensorFlow's C++ info and warning logs bury the output researchers need; a user who wants them back sets the
    variable themselves, which this leaves alone. It must happen before TensorFlow is imported.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_tensorflow_quietly() -> None:
    """`quiet_tensorflow_logging`, then import TensorFlow (and run its first op) with the native start-up chatter
    filtered out of stderr.

    Call it first thing at an entry point; a second call costs nothing.
    """
    quiet_tensorflow_logging()
    with filtered_native_stderr():
        import tensorflow

        tensorflow.constant(0)  # the CPU-feature notice is printed at the first op


# Kernel command-line option that runs the filtered import as the kernel starts, before any cell: a notebook run
# through papermill with it shows no TensorFlow start-up line, whatever its cells import.
KERNEL_ARGUMENT = ("--IPKernelApp.exec_lines="
                   "from fakelib.quiet import import_tensorflow_quietly; import_tensorflow_quietly()")


@contextlib.contextmanager
def muted_logger(name: str, level: int = logging.CRITICAL) -> Iterator[None]:
    """Raise the Python logger `name` to `level` for the block, then restore it."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)
