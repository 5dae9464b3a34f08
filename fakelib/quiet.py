"""TensorFlow imported with its native start-up lines filtered out, for entry points: the CLI, run_all.py, kernels.

TensorFlow 2.21 writes an absl pre-init warning, a oneDNN notice and CPU-feature notices straight to file
descriptor 2, whatever TF_CPP_MIN_LOG_LEVEL says (measured: 3 hides none of them). In a terminal they bury a
command's one-line error; in a Jupyter kernel the kernel forwards descriptor 2 to the page, so they appear in
every executed notebook and on the served explorer. Turning oneDNN off (TF_ENABLE_ONEDNN_OPTS=0) would silence
one line and make training 2-5x slower, so instead descriptor 2 is captured while TensorFlow starts and every
other line is replayed. Importing this module (or fakelib) changes nothing, the environment included; only the
entry points call `tensorflow_environment` (which also turns oneDNN on where TensorFlow would leave it off) and
`import_tensorflow_quietly`.
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


# What the entry points set for this process and those it starts (kernels, Dask workers), unless already set.
# TF_CPP_MIN_LOG_LEVEL 2: TensorFlow's C++ info and warning logs bury the output researchers need.
# TF_ENABLE_ONEDNN_OPTS 1: TensorFlow 2.21 turns its oneDNN kernels on by itself only on x86 CPUs with AVX-512
# VNNI/BF16 or AMX; on an AVX2-only CPU (measured on a 2-core AMD EPYC, Zen 3) they are off, and a training step
# of the default `cnn` at 128 px (batch 32) takes 0.77 s instead of 0.36 s, of the trace expert at 256 px 0.46 s
# instead of 0.22 s. Where TensorFlow would turn them on anyway, setting 1 changes nothing.
TENSORFLOW_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "1"}


def tensorflow_environment() -> None:
    """Set `TENSORFLOW_ENVIRONMENT` for this process and those it starts, leaving any variable a user has set.

    It must happen before TensorFlow is imported (both are read as TensorFlow's library loads).
    """
    for name, value in TENSORFLOW_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def import_tensorflow_quietly() -> None:
    """`tensorflow_environment`, then import TensorFlow (and run its first op) with the native start-up chatter
    filtered out of stderr.

    Call it first thing at an entry point; a second call costs nothing.
    """
    tensorflow_environment()
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
