"""fakelib.practice: guesses on a folder of faces, the model's answer, the running score, the resumable CSV log, the
widgets without a browser, and `fakelib serve --practice DIR`."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from fakelib import practice, serve
from fakelib.__main__ import main
from fakelib.predict import Predictor
from test_serve import browser  # noqa: F401  (the headless Chromium fixture of the explorer's browser test)


@pytest.fixture()
def folder(explain_demo_dir: Path, tmp_path: Path) -> Path:
    """A practice folder: 3 real and 3 fake demo faces, and a file in fake/ that is not an image."""
    target = tmp_path / "practice"
    for label in ("real", "fake"):
        (target / label).mkdir(parents=True)
        for source in sorted((explain_demo_dir / "data" / label).glob("*.jpg"))[:3]:
            shutil.copy(source, target / label / source.name)
    (target / "fake" / "broken.jpg").write_bytes(b"not a jpeg")
    return target


@pytest.fixture(scope="module")
def predictor(explain_demo_dir: Path) -> Predictor:
    return Predictor.from_path(explain_demo_dir / "model.keras")


def test_a_guess_is_answered_and_logged_and_the_session_resumes(folder, predictor):
    session = practice.PracticeSession(folder, predictor, seed=0)
    shown = []
    for index in range(3):
        relpath, image, _ = session.next_face()
        assert relpath != "fake/broken.jpg" and image.shape == (48, 48, 3)
        reveal = session.guess("fake", (0.37, 0.47) if index == 0 else None)
        shown.append(relpath)
        assert reveal.row["image"] == relpath and reveal.row["truth"] == relpath.split("/")[0]
        assert reveal.row["correct"] == (relpath.startswith("fake/"))
        assert 0.0 <= reveal.row["p_fake"] <= 1.0 and reveal.row["model_verdict"] in ("real", "fake")
        assert reveal.heatmap.shape == (48, 48) and reveal.region_mask.any()
    rows = list(csv.DictReader((folder / practice.LOG_NAME).open()))
    assert [row["image"] for row in rows if row["guess"]] == shown
    assert rows[0]["look_x"] == "0.37" and rows[0]["looked_at"] != ""  # where the person looked, and its region
    resumed = practice.PracticeSession(folder, predictor, seed=0)
    assert resumed.score()["n"] == 3 and not set(shown) & set(resumed.remaining())
    seen = [resumed.next_face()[0] for _ in range(1) if resumed.remaining()]
    assert seen and seen[0] not in shown


def test_an_unreadable_face_is_logged_and_skipped_but_not_scored(folder, predictor):
    session = practice.PracticeSession(folder, predictor, seed=0)
    while session.remaining():
        relpath, image, message = session.next_face()
        if not relpath:
            break
        session.guess("real")
    assert session.next_face()[0] == "" and "All 7 faces are done" in session.next_face()[2]
    statuses = {row["image"]: row["status"] for row in practice.read_log(folder / practice.LOG_NAME)}
    assert statuses["fake/broken.jpg"].startswith("unreadable")
    assert session.score()["n"] == 6 and session.score()["accuracy"] == pytest.approx(0.5)


def test_bad_guesses_are_refused(folder, predictor):
    session = practice.PracticeSession(folder, predictor)
    with pytest.raises(ValueError, match="no face is shown"):
        session.guess("fake")
    session.next_face()
    with pytest.raises(ValueError, match="guess must be one of real, fake"):
        session.guess("maybe")
    with pytest.raises(ValueError, match="look must be two fractions"):
        session.guess("fake", (1.5, 0.2))
    relpath = session.current
    (folder / relpath).unlink()  # removed while shown: logged, not scored, no traceback
    reveal = session.guess("real")
    assert reveal.image is None and reveal.row["status"].startswith("unreadable") and session.score()["n"] == 0
    assert "unreadable" in practice.reveal_html(reveal, 0.5)
    with pytest.raises(ValueError, match="has no real/ and no fake/ folder"):
        practice.PracticeSession(folder / "fake", predictor)


def test_the_score_compares_the_first_ten_guesses_with_the_last_ten():
    rows = [{"correct": str(index >= 12)} for index in range(25)]  # wrong at first, right later
    summary = practice.score(rows)
    assert summary == {"n": 25, "accuracy": pytest.approx(13 / 25), "first": 0.0, "last": 1.0, "change": 1.0}
    assert "First 10: 0% right, last 10: 100% (better)" in practice.score_line(summary)
    early = practice.score(rows[:15])
    assert early["first"] is None and "After 20 guesses" in practice.score_line(early)
    assert practice.score_line(practice.score([])) == "No guess yet."


def test_the_page_answers_a_click_and_a_guess_without_a_browser(folder, predictor):
    session = practice.PracticeSession(folder, predictor, log_path=folder / "mine.csv")
    app = practice.build_app(session)
    parts = app.widgets
    assert "Real or fake?" in parts["prompt"].value and not parts["fake"].disabled
    parts["cells"][6].value = True  # second row, second column
    parts["cells"][7].value = True  # a second click moves the look
    assert [cell.value for cell in parts["cells"]].count(True) == 1
    parts["fake"].click()
    assert "The model says" in parts["answer"].value and parts["fake"].disabled
    assert parts["score"].value.startswith("1 guess, ")
    row = practice.read_log(folder / "mine.csv")[0]
    assert (float(row["look_x"]), float(row["look_y"])) == pytest.approx((0.5, 0.3))
    parts["next"].click()
    assert parts["answer"].value == "" and not parts["fake"].disabled


def test_serve_practice_injects_the_folder_and_refuses_a_bad_one(folder, tmp_path, capsys):
    import nbformat

    notebook = nbformat.read(str(serve.served_notebook(tmp_path, None, practice_dir=folder)), as_version=4)
    assert notebook.metadata["title"] == serve.PRACTICE_TITLE
    injected = [cell for cell in notebook.cells if "injected-parameters" in cell.metadata.get("tags", [])]
    assert f"practice_dir = {str(folder)!r}" in injected[0].source.replace('"', "'")
    assert main(["serve", "--practice", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err.startswith("fakelib serve: error: dataset folder not found")
    assert main(["serve", "--practice", str(folder / "real")]) == 2
    assert "has no real/ and no fake/ folder" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.notebook
def test_practice_notebook_shows_the_page_or_one_line_for_a_bad_folder(folder, explain_demo_dir, tmp_path):
    from conftest import execute_notebook

    parameters = {"practice_dir": str(folder), "model_path": str(explain_demo_dir / "model.keras"),
                  "log_path": str(tmp_path / "guesses.csv")}
    executed = execute_notebook("practice.ipynb", parameters)
    outputs = [output for cell in executed.cells for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    assert any("application/vnd.jupyter.widget-view+json" in output.get("data", {}) for output in outputs)
    broken = execute_notebook("practice.ipynb", {**parameters, "practice_dir": str(tmp_path / "absent")},
                              output=tmp_path / "practice-broken.ipynb")
    shown = json.dumps([output for cell in broken.cells for output in cell.get("outputs", [])])
    assert "Practice cannot start: dataset folder not found" in shown and '"error"' not in shown


# ------------------------------------------------------------------------------------------- in a real browser


@pytest.fixture
def practice_server(folder: Path, explain_demo_dir: Path):
    """`python -m fakelib serve --practice DIR` on a free loopback port, stopped (with its kernels) after the test."""
    from test_serve import start_server

    yield from start_server(["--practice", str(folder), "--model", str(explain_demo_dir / "model.keras")])


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.timeout(300)
def test_the_served_practice_page_answers_a_click_and_a_guess(practice_server, browser, folder):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from test_serve import _text

    from fakelib import paths

    def button(driver, label):
        found = [item for item in driver.find_elements(By.CSS_SELECTOR, "button") if item.text == label]
        return found[0] if found else None

    browser.get(practice_server.url)
    WebDriverWait(browser, 120).until(lambda driver: button(driver, "Fake"))
    page = browser.find_element(By.TAG_NAME, "body").text
    assert browser.title == serve.PRACTICE_TITLE and "Real or fake?" in page
    assert "Traceback" not in page and "import " not in page
    cells = browser.find_elements(By.CSS_SELECTOR, ".widget-toggle-button")
    assert len(cells) == practice.LOOK_GRID ** 2
    cells[12].click()  # the centre of the face
    button(browser, "Fake").click()
    WebDriverWait(browser, 60).until(lambda driver: "The model says" in _text(driver, ".fakelib-answer"))
    widths = browser.execute_script(  # the face, and the answer's picture (face and heatmap side by side)
        "return [...document.querySelectorAll('.widget-output img')].map(i => i.naturalWidth)")
    assert len(widths) == 2 and widths[1] > widths[0], widths
    assert re.search(r"this face is (real|fake)\. The model says (real|fake) \(p\(fake\) = [01]\.\d\d",
                     _text(browser, ".fakelib-answer"))
    assert "1 guess, " in browser.find_element(By.TAG_NAME, "body").text
    screenshot = paths.ROOT / "build" / "practice-page.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(screenshot))
    rows = practice.read_log(folder / practice.LOG_NAME)
    assert len(rows) == 1 and (rows[0]["look_x"], rows[0]["look_y"]) == ("0.5", "0.5")
    button(browser, "Next face").click()
    WebDriverWait(browser, 30).until(lambda driver: _text(driver, ".fakelib-answer") == "")
