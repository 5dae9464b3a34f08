"""`python -m fakelib serve`: its pieces without a server, then the served explorer in headless Chromium.

The browser test starts the real command on a free loopback port, uploads a demo face and then a file that is
not an image through the page, and saves a screenshot as build/explore-page.png. It needs Debian's `chromium`
and `chromium-driver` (`make browser` installs them; `make test` runs it first).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakelib import paths, serve
from fakelib.__main__ import main

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Without these, headless Chromium waits on the closed network (updates, sync, QUIC probes) and stalls.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1500")
SCREENSHOT = paths.ROOT / "build" / "explore-page.png"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_served_notebook_gets_its_parameters_injected(tmp_path):
    import nbformat

    notebook = nbformat.read(str(serve.served_notebook(tmp_path, tmp_path / "model.keras")), as_version=4)
    injected = [cell for cell in notebook.cells if "injected-parameters" in cell.metadata.get("tags", [])]
    assert len(injected) == 1
    assert f"model_path = {str(tmp_path / 'model.keras')!r}" in injected[0].source.replace('"', "'")
    assert serve.STOP_HINT in injected[0].source and "Ctrl+C" in serve.STOP_HINT


def test_voila_serves_on_loopback_without_code_or_tracebacks(tmp_path):
    command = serve.voila_command(tmp_path / "explore.ipynb", 9123)
    assert command[:3] == [sys.executable, "-m", "voila"]
    for option in ("--port=9123", "--Voila.ip=127.0.0.1", "--Voila.port_retries=0", "--no-browser",
                   "--strip_sources=True", "--show_tracebacks=False", "--KernelManager.transport=ipc"):
        assert option in command
    assert "--Voila.ip=0.0.0.0" in serve.voila_command(tmp_path / "explore.ipynb", 9123, host="0.0.0.0")
    assert serve.kernel_environment()["PYTHONPATH"].split(os.pathsep)[0] == str(paths.ROOT)


def test_serve_refuses_a_taken_port_and_a_missing_model_in_one_line(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert error == f"fakelib serve: error: port {port} on 127.0.0.1 is already in use; pick another with --port\n"
    assert main(["serve", "--port", "70000"]) == 2
    assert "expected 1..65535" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path / "absent.keras")]) == 2
    assert capsys.readouterr().err.startswith("fakelib serve: error: No such model file: ")
    assert main(["serve", "--model", str(tmp_path)]) == 2
    assert "is a folder; give the model.keras file inside it" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- in a real browser


@pytest.fixture
def served_model(explain_demo_dir: Path, tmp_path: Path) -> Path:
    """The tiny demo detector in a run folder like train writes: params.yaml naming the demo data, metrics.json."""
    folder = tmp_path / "3f9a0c"
    folder.mkdir()
    shutil.copy(explain_demo_dir / "model.keras", folder / "model.keras")
    (folder / "params.yaml").write_text(f"data:\n  data_dir: {explain_demo_dir / 'data'}\n  image_size: 48\n"
                                        "model:\n  model: cnn\n")
    (folder / "metrics.json").write_text(json.dumps({"model": "cnn", "val_roc_auc": 0.987, "test_roc_auc": 0.981,
                                                     "threshold": 0.5}))
    return folder / "model.keras"


class Server:
    """A running `python -m fakelib serve`: its address, and `stop()`, which returns all it printed."""

    def __init__(self, process: subprocess.Popen, url: str):
        self.process, self.url, self.printed = process, url, None

    def stop(self) -> str:
        if self.printed is None:
            self.process.send_signal(signal.SIGTERM)  # serve forwards it to Voila, which shuts its kernels down
            try:
                self.printed, _ = self.process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.printed, _ = self.process.communicate()
        return self.printed


def start_server(arguments: list[str]) -> Iterator[Server]:
    """`python -m fakelib serve --port P ARGUMENTS` on a free loopback port, yielded once it listens, then stopped
    (with its kernels)."""
    port = _free_port()
    # ipykernel forwards native stderr to the page only when it does not see this variable
    environment = {key: value for key, value in os.environ.items() if key != "PYTEST_CURRENT_TEST"}
    process = subprocess.Popen([sys.executable, "-m", "fakelib", "serve", "--port", str(port), *arguments],
                               cwd=paths.ROOT, start_new_session=True, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    running = Server(process, f"http://127.0.0.1:{port}/")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        assert process.poll() is None, running.stop()
        yield running
    finally:
        running.stop()


@pytest.fixture
def server(served_model: Path):
    """The explorer served on a free loopback port, stopped (with its kernels) after the test."""
    yield from start_server(["--model", str(served_model)])


@pytest.fixture
def browser():
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip("Chromium is not installed: `make browser` installs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="fakelib-chromium-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# ipywidgets' FileUpload opens a file input that it never adds to the page, so WebDriver cannot reach it.
# This makes the button's click put that input on the page instead of opening the system dialog; choosing a
# file then fires the same `change` event the widget listens to after a person picks a file.
EXPOSE_FILE_INPUT = """
const click = HTMLInputElement.prototype.click;
HTMLInputElement.prototype.click = function () {
  if (this.type !== 'file') { return click.call(this); }
  this.classList.add('fakelib-test-file');
  document.body.appendChild(this);
};
"""


def _upload(driver, path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "button.widget-upload").click()
    driver.find_element(By.CSS_SELECTOR, "input.fakelib-test-file").send_keys(str(path))


def _text(driver, selector: str) -> str:
    """Text of the first element matching `selector` ('' when absent); widgets re-render, so look it up anew."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        found = driver.find_elements(By.CSS_SELECTOR, selector)
        return found[0].text if found else ""
    except StaleElementReferenceException:
        return ""


def _heatmaps_shown(driver) -> int:
    """Number of decoded pictures in the explorer's output area."""
    return driver.execute_script(
        "return [...document.querySelectorAll('.widget-output img')].filter(i => i.naturalWidth > 0).length")


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(300)
def test_the_served_page_gives_a_verdict_with_heatmaps_then_one_line_for_a_file_that_is_not_an_image(
        server, browser, explain_demo_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.url)
    WebDriverWait(browser, 120).until(lambda driver: driver.find_elements(By.CSS_SELECTOR, "button.widget-upload"))
    page = browser.find_element(By.TAG_NAME, "body").text
    assert browser.title == serve.PAGE_TITLE and "Is this face real?" in page and serve.STOP_HINT in page
    assert "cnn, 48 px, val ROC-AUC 0.987" in page  # the model list names parameters and score, not a hash
    for hidden in ("import ", "explore.Explorer", "Traceback", "oneDNN", "absl", "model_path"):
        assert hidden not in page  # no code, no developer wording, no TensorFlow start-up lines
    browser.execute_script(EXPOSE_FILE_INPUT)

    face = sorted((explain_demo_dir / "data" / "fake").glob("*.jpg"))[0]
    _upload(browser, face)
    WebDriverWait(browser, 60).until(lambda driver: _text(driver, ".fakelib-verdict") and _heatmaps_shown(driver))
    assert re.fullmatch(r"(FAKE|REAL): p\(fake\) = [01]\.\d\d \(threshold 0\.50\)(\. Most evidence around .+)?",
                        _text(browser, ".fakelib-verdict"))
    card = _text(browser, ".fakelib-card")
    assert "ROC-AUC 0.981" in card and "threshold 0.50" in card and "synthetic demo faces" in card
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))

    notes = tmp_path / "shopping-list.txt"
    notes.write_text("eggs, flour, milk\n")
    _upload(browser, notes)
    WebDriverWait(browser, 60).until(lambda driver: "shopping-list.txt" in _text(driver, ".fakelib-verdict"))
    error = _text(browser, ".fakelib-verdict")
    assert error == ("'shopping-list.txt' is not an image this explorer reads: please upload a JPG, PNG or WebP "
                     "photo of a face.")
    WebDriverWait(browser, 10).until(lambda driver: _heatmaps_shown(driver) == 0)
    assert "Traceback" not in browser.find_element(By.TAG_NAME, "body").text

    from fakelib.quiet import NATIVE_CHATTER

    printed = server.stop().splitlines()  # Voila's kernels write TensorFlow's start-up lines to its terminal
    assert printed[0] == f"Serving the explorer at {server.url} (press Ctrl+C here to stop it)"
    assert not [line for line in printed if NATIVE_CHATTER.match(line) or "oneDNN" in line]
