"""`python -m fakelib serve`: the explore notebook as a standalone web page, through Voilà.

Voilà runs the notebook in a fresh kernel for each visitor and shows its widgets and outputs without the code
(`strip_sources`) and without tracebacks. The notebook gets its parameters the way papermill gives them: a copy
with an injected parameters cell, written to a temporary folder that lives as long as the server.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from fakelib import paths

NOTEBOOK = "explore.ipynb"
PRACTICE_NOTEBOOK = "practice.ipynb"
DEFAULT_PORT = 8866  # Voilà's own default
DEFAULT_HOST = "127.0.0.1"  # this machine only: another address is a choice the person makes with --host
PAGE_TITLE = "Is this face real?"
PRACTICE_TITLE = "Real or generated? Practice"
STOP_HINT = "To stop this page, press Ctrl+C in the terminal where it was started."


def served_notebook(folder: Path, model_path: Path | None, stop_hint: str = STOP_HINT,
                    practice_dir: Path | None = None) -> Path:
    """Write the explore notebook (the practice notebook with `practice_dir`) with its parameters injected (as
    papermill does) into `folder`; return it."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    name = NOTEBOOK if practice_dir is None else PRACTICE_NOTEBOOK
    notebook = load_notebook_node(str(paths.NOTEBOOKS / name))  # papermill's reader: every cell gets `tags`
    parameters = {"stop_hint": stop_hint}
    if model_path is not None:
        parameters["model_path"] = str(model_path)
    if practice_dir is not None:
        parameters["practice_dir"] = str(practice_dir)
    notebook = parameterize_notebook(notebook, parameters, kernel_name="python3", language="python")
    # the browser tab's name, instead of the notebook's file name
    notebook.metadata["title"] = PAGE_TITLE if practice_dir is None else PRACTICE_TITLE
    target = folder / name
    nbformat.write(notebook, str(target))
    return target


def voila_command(notebook: Path, port: int, host: str = DEFAULT_HOST) -> list[str]:
    """The Voilà command line that serves `notebook` on `host:port`: no browser opened, no code, no tracebacks."""
    return [sys.executable, "-m", "voila", str(notebook), f"--port={port}", f"--Voila.ip={host}",
            "--Voila.port_retries=0",  # the printed address must be the real one: a taken port is an error
            "--no-browser", "--strip_sources=True", "--show_tracebacks=False", "--theme=light",
            "--Voila.log_level=ERROR",
            # kernels on Unix sockets instead of loopback TCP ports that any local user could connect to,
            # and no "running over TCP without encryption" warning per visitor in the terminal
            "--KernelManager.transport=ipc"]


def kernel_environment() -> dict[str, str]:
    """The server's environment, with this checkout first on the kernels' import path.

    A kernel starts in the notebook's temporary folder, so without this it would import whichever fakelib is
    installed, not necessarily the one running this command.
    """
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.ROOT), environment.get("PYTHONPATH")]))
    return environment


def check_port(host: str, port: int) -> None:
    """Refuse a port outside 1..65535 or one already taken on `host`, before Voilà starts.

    Raises:
        ValueError: the port is not usable (one line that says what to do).
    """
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is not allowed; expected 1..65535")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            reason = "is already in use" if error.errno == errno.EADDRINUSE else f"cannot be used ({error.strerror})"
            raise ValueError(f"port {port} on {host} {reason}; pick another with --port") from None


def check_model(model_path: str | None) -> Path | None:
    """The model path as an absolute path, or None to let the notebook offer every model it finds.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the path is a folder, not a model file.
    """
    if model_path is None:
        return None
    path = paths.resolve(Path.cwd() / model_path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "No such model file", str(path))
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give the model.keras file inside it")
    return path


def check_practice(practice_dir: str | None) -> Path | None:
    """The practice folder as an absolute path (it must hold real/ and fake/), or None without one.

    Raises:
        FileNotFoundError, NotADirectoryError, ValueError: missing, not a folder, or without real/ and fake/.
    """
    if practice_dir is None:
        return None
    from fakelib.layout import class_folders

    path = paths.resolve(Path.cwd() / practice_dir)
    class_folders(path)
    return path


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def stop(server: subprocess.Popen, timeout: float = 10.0) -> None:
    """Ask Voilà to shut down (it stops its kernels on SIGTERM), and kill it if it has not after `timeout` s."""
    server.terminate()
    try:
        server.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def serve(model: str | None = None, host: str = "127.0.0.1", port: int = 8866, practice: str | None = None) -> int:
    """`python -m fakelib serve`: serve the explorer (or the practice page on `practice`) until Ctrl+C or SIGTERM."""
    model_path = check_model(model)
    practice_dir = check_practice(practice)
    check_port(host, port)
    with tempfile.TemporaryDirectory(prefix="fakelib-serve-") as folder:
        notebook = served_notebook(Path(folder), model_path, practice_dir=practice_dir)
        shown_host = f"[{host}]" if ":" in host else host
        page = "the explorer" if practice_dir is None else f"practice on {practice_dir}"
        print(f"Serving {page} at http://{shown_host}:{port}/ (press Ctrl+C here to stop it)", flush=True)
        server = subprocess.Popen(voila_command(notebook, port, host), env=kernel_environment())
        previous = signal.signal(signal.SIGTERM, _interrupt)  # a SIGTERM to this process must not orphan Voilà
        try:
            return server.wait()
        except KeyboardInterrupt:  # the normal way to stop
            stop(server)
            print("fakelib serve: stopped", file=sys.stderr)
            return 0
        finally:
            signal.signal(signal.SIGTERM, previous)
