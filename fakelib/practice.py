"""Practice mode: a person guesses whether faces of a folder (`real/`, `fake/`) are real, may say where they looked,
then sees the model's verdict, probability, heatmap and the region it points to; guesses go to a CSV.

`PracticeSession` is the logic (tested without a browser); `build_app` only wires ipywidgets to it
(notebooks/practice.ipynb, served by `python -m fakelib serve --practice DIR`).

The log is one CSV row per guess (`COLUMNS`), rewritten atomically on every guess (a temporary file and a
rename: a crash never leaves half a row), and read back on start: a session resumes where the last one stopped,
showing only faces not guessed yet, in a seeded order. The score compares the first ten guesses with the last ten.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fakelib import atomic, contrast, explain, landmarks, overlay, regions
from fakelib import images as imagelib
from fakelib.layout import dataset_files

COLUMNS = ("time", "image", "truth", "guess", "correct", "look_x", "look_y", "looked_at", "p_fake", "model_verdict",
           "model_region", "status")
GUESSES = ("real", "fake")
WINDOW = 10  # first ten guesses against the last ten
LOG_NAME = "practice_guesses.csv"


@dataclass
class Reveal:
    """What the page shows after a guess.

    Attributes:
        row: the CSV row written for the guess.
        image: (size, size, 3) uint8 as the model saw it (None when the file could not be read).
        heatmap: (size, size) in [0, 1], the mean of the layers' maps (None when unreadable).
        region_mask: (size, size) bool, the region the model points to (None when unreadable).
        threshold: the threshold the face was judged at (`predict.Predictor.thresholds`; None when unreadable).
    """

    row: dict
    image: np.ndarray | None = None
    heatmap: np.ndarray | None = None
    region_mask: np.ndarray | None = None
    threshold: float | None = None


def read_log(path: Path) -> list[dict]:
    """Rows of a practice CSV (empty when the file does not exist): guesses, and unreadable faces (guess "")."""
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [row for row in csv.DictReader(handle) if row.get("image") and row.get("guess") in ("", *GUESSES)]


def write_log(path: Path, rows: list[dict]) -> None:
    """Write every row as CSV through a temporary file and a rename."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, buffer.getvalue())


def score(rows: list[dict], window: int = WINDOW) -> dict:
    """Accuracy overall, over the first `window` guesses and over the last `window`, and the change.

    Returns:
        {"n", "accuracy", "first", "last", "change"}; first/last/change are None until there are 2 x `window`
        guesses (before that the two windows would overlap and the change would compare guesses with themselves).
    """
    correct = np.array([row["correct"] in (True, "True", "1", 1) for row in rows], dtype=float)
    result = {"n": len(rows), "accuracy": float(correct.mean()) if len(rows) else None,
              "first": None, "last": None, "change": None}
    if len(rows) >= 2 * window:
        result["first"], result["last"] = float(correct[:window].mean()), float(correct[-window:].mean())
        result["change"] = result["last"] - result["first"]
    return result


def score_line(summary: dict, window: int = WINDOW) -> str:
    """The running score as one sentence."""
    if not summary["n"]:
        return "No guess yet."
    line = f"{summary['n']} guess{'es' if summary['n'] != 1 else ''}, {100 * summary['accuracy']:.0f}% right."
    if summary["change"] is None:
        return line + f" After {2 * window} guesses your first {window} are compared with your last {window}."
    trend = "better" if summary["change"] > 0 else "worse" if summary["change"] < 0 else "the same"
    return (line + f" First {window}: {100 * summary['first']:.0f}% right, last {window}: "
                   f"{100 * summary['last']:.0f}% ({trend}).")


class PracticeSession:
    """A practice run over one folder with one model.

    Args:
        folder: a folder with `real/` and `fake/` images.
        predictor: a `fakelib.predict.Predictor` (model, threshold, preprocessing).
        log_path: the CSV of guesses (default: `folder/practice_guesses.csv`); read back to resume.
        method: CAM method for the heatmap.
        seed: the order the faces are shown in.

    Raises:
        FileNotFoundError, NotADirectoryError, ValueError: the folder is missing, not a folder, lacks `real/` or
            `fake/`, or holds no image.
    """

    def __init__(self, folder: str | Path, predictor, log_path: str | Path | None = None, method: str = "layercam",
                 seed: int = 0):
        explain.get_method(method)
        self.folder = Path(folder)
        files = dataset_files(self.folder)
        if not files:
            raise ValueError(f"{self.folder}: no image in real/ or fake/")
        order = np.random.default_rng(seed).permutation(len(files))
        self.files = [files[index] for index in order]  # (relpath, label 0/1) in the order shown
        self.predictor, self.method = predictor, method
        self.log_path = Path(log_path) if log_path is not None else self.folder / LOG_NAME
        self.rows = read_log(self.log_path)
        self.current: str | None = None

    def remaining(self) -> list[str]:
        """Faces not guessed yet, in the order they will be shown."""
        done = {row["image"] for row in self.rows}
        return [relpath for relpath, _ in self.files if relpath not in done]

    def next_face(self) -> tuple[str, np.ndarray | None, str]:
        """(relpath, image as the model sees it, message) of the next face; relpath "" when all are done.

        An unreadable file is logged with status "unreadable" and skipped, never shown as a broken face.
        """
        for relpath in self.remaining():
            try:
                image = self.predictor.prepare((self.folder / relpath).read_bytes())
            except (imagelib.ImageError, OSError) as error:
                self._log(relpath, "", None, None, status=f"unreadable: {error}")
                continue
            self.current = relpath
            return relpath, image, "Real or fake? You may first click where you looked."
        self.current = None
        return "", None, f"All {len(self.files)} faces are done. {score_line(self.score())}"

    def truth(self, relpath: str) -> str:
        return GUESSES[dict(self.files)[relpath]]

    def guess(self, guess: str, look: tuple[float, float] | None = None) -> Reveal:
        """Record a guess on the current face (`look`: where the person looked, as fractions x, y of the side) and
        return what the model says about it.

        Raises:
            ValueError: an unknown guess, a look outside the face, or no current face.
        """
        if guess not in GUESSES:
            raise ValueError(f"guess must be one of {', '.join(GUESSES)}, got {guess!r}")
        if look is not None and not all(0.0 <= value <= 1.0 for value in look):
            raise ValueError(f"look must be two fractions of the side in [0, 1], got {look}")
        if self.current is None:
            raise ValueError("no face is shown: call next_face() first")
        relpath, self.current = self.current, None
        try:
            image, expert_view = self.predictor.prepare_inputs((self.folder / relpath).read_bytes())
        except (imagelib.ImageError, OSError) as error:  # changed or removed since it was shown: not scored
            return Reveal(self._log(relpath, "", look, None, status=f"unreadable: {error}"))
        cams = explain.compute_cams(self.predictor.model, image[None], self.method)
        probability, threshold = self.predictor.judge(float(cams.probabilities[0]), expert_view)
        heatmap = explain.normalize(np.mean(list(cams.heatmaps.values()), axis=0))[0]
        maps = landmarks.region_maps(image[None])
        top = int(contrast.top_regions(contrast.image_lifts(heatmap[None], maps.labels))[0])
        looked_at = _region_at(maps.labels[0], look)
        row = self._log(relpath, guess, look, looked_at, probability=probability, threshold=threshold,
                        region=regions.REGIONS[top] if top >= 0 else "", status=maps.statuses[0])
        return Reveal(row, image, heatmap, maps.labels[0] == top if top >= 0 else None, threshold)

    def _log(self, relpath, guess, look, looked_at, probability=None, region="", status="",
             threshold: float | None = None) -> dict:
        threshold = self.predictor.threshold if threshold is None else threshold
        verdict = "" if probability is None else ("fake" if probability >= threshold else "real")
        row = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "image": relpath, "truth": self.truth(relpath),
               "guess": guess, "correct": guess == self.truth(relpath),
               "look_x": "" if look is None else round(look[0], 4), "look_y": "" if look is None else round(look[1], 4),
               "looked_at": looked_at or "", "p_fake": "" if probability is None else round(probability, 6),
               "model_verdict": verdict, "model_region": region, "status": status}
        self.rows = [*self.rows, row]
        write_log(self.log_path, self.rows)
        return row

    def guesses(self) -> list[dict]:
        """The rows that are guesses (an unreadable face is logged so it is not offered again, but not scored)."""
        return [row for row in self.rows if row.get("guess") in GUESSES]

    def score(self) -> dict:
        return score(self.guesses())


def _region_at(labels: np.ndarray, look: tuple[float, float] | None) -> str | None:
    """The region under a look position (fractions of the side), or None without one."""
    if look is None:
        return None
    size = labels.shape[0]
    row, column = (min(size - 1, int(value * size)) for value in (look[1], look[0]))
    return regions.REGIONS[int(labels[row, column])]


def reveal_html(reveal: Reveal, threshold: float) -> str:
    """The answer after a guess: right or wrong, the truth, the model's verdict and probability (at the threshold
    the face was judged at, else `threshold`), its region."""
    import html as html_module

    row = reveal.row
    if row["p_fake"] == "":
        return f"<p>{html_module.escape(row['status'])}</p>"
    threshold = threshold if reveal.threshold is None else reveal.threshold
    outcome = "Right" if row["correct"] else "Wrong"
    region = regions.REGION_LABELS.get(row["model_region"], "nowhere in particular")
    looked = f" You looked at the {regions.REGION_LABELS[row['looked_at']]}." if row["looked_at"] else ""
    return (f'<p class="fakelib-answer"><b>{outcome}: this face is {row["truth"]}.</b> The model says '
            f"{row['model_verdict']} (p(fake) = {float(row['p_fake']):.2f}, threshold {threshold:.2f}); its strongest "
            f"evidence is in the {html_module.escape(region)}.{html_module.escape(looked)}</p>")


LOOK_GRID = 5  # the face is split into 5 x 5 cells a person can click to say where they looked
FACE_PIXELS = 256  # the face is shown at this side, and the grid beside it has the same size


def build_app(session: PracticeSession, colormap: str = overlay.DEFAULT_COLORMAP):
    """The ipywidgets page around `session`: the face, a grid to click where you looked, Real / Fake, the answer,
    the running score, and Next."""
    import ipywidgets as widgets
    from IPython.display import Image as PngImage
    from IPython.display import display

    # the face keeps its place (the look grid beside it has the same size); the answer's picture goes below
    face, picture = widgets.Output(layout=widgets.Layout(width=f"{FACE_PIXELS + 12}px")), widgets.Output()
    answer, score_text = widgets.HTML(), widgets.HTML(score_line(session.score()))
    prompt = widgets.HTML()
    state = {"look": None, "image": None}
    side = f"{FACE_PIXELS // LOOK_GRID - 2}px"
    cells = [widgets.ToggleButton(tooltip=f"row {index // LOOK_GRID + 1}, column {index % LOOK_GRID + 1}",
                                  layout=widgets.Layout(width=side, height=side, padding="0", margin="1px"))
             for index in range(LOOK_GRID * LOOK_GRID)]
    real, fake, following = (widgets.Button(description=text) for text in ("Real", "Fake", "Next face"))

    def show_face(*_):
        relpath, image, message = session.next_face()
        state.update(look=None, image=image)
        for cell in cells:
            cell.value = False
        prompt.value, answer.value = message, ""
        face.clear_output()
        picture.clear_output()
        if image is not None:
            with face:
                display(PngImage(data=_png(image)))
        real.disabled = fake.disabled = image is None

    def on_cell(index):
        def handler(change):
            if change["new"]:
                for other, cell in enumerate(cells):  # one cell at a time: the others switch off
                    cell.value = other == index
                state["look"] = ((index % LOOK_GRID + 0.5) / LOOK_GRID, (index // LOOK_GRID + 0.5) / LOOK_GRID)
        return handler

    def on_guess(guess):
        def handler(_):
            if session.current is None:
                return
            reveal = session.guess(guess, state["look"])
            real.disabled = fake.disabled = True
            if reveal.image is not None:  # the picture first: the answer's text appears with it, not before
                with picture:
                    display(PngImage(data=overlay.to_png(overlay.plot_reveal(
                        reveal.image, reveal.heatmap, reveal.region_mask, state["look"], colormap=colormap))))
            answer.value = reveal_html(reveal, session.predictor.threshold)
            score_text.value = score_line(session.score())
        return handler

    for index, cell in enumerate(cells):
        cell.observe(on_cell(index), names="value")
    real.on_click(on_guess("real"))
    fake.on_click(on_guess("fake"))
    following.on_click(show_face)
    parts = {"face": face, "picture": picture, "cells": cells, "real": real, "fake": fake, "next": following, "answer": answer,
             "score": score_text, "prompt": prompt}
    show_face()
    return _layout(parts)


def _layout(parts: dict):
    """The page: prompt, the face beside the look grid, the buttons, the answer and the score."""
    import ipywidgets as widgets

    grid = widgets.GridBox(parts["cells"], layout=widgets.Layout(
        grid_template_columns=f"repeat({LOOK_GRID}, {FACE_PIXELS // LOOK_GRID}px)"))
    looked = widgets.VBox([widgets.HTML("<small>Where did you look? (optional)</small>"), grid])
    app = widgets.VBox([parts["prompt"], widgets.HBox([parts["face"], looked]),
                        widgets.HBox([parts["real"], parts["fake"], parts["next"]]), parts["answer"], parts["picture"],
                        parts["score"]])
    app.widgets = parts  # handles for tests and for the notebook
    return app


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    shown = Image.fromarray(np.asarray(image, dtype=np.uint8)).resize((FACE_PIXELS, FACE_PIXELS), Image.NEAREST)
    shown.save(buffer, format="PNG")
    return buffer.getvalue()
