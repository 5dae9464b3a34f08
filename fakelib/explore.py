"""The logic behind the explore notebook's widgets: an uploaded face -> verdict, probability and per-layer heatmaps.

`Explorer` holds the state (loaded models, the current upload, method, colormap, opacity) and does the work;
`build_app` only wires ipywidgets to it, so everything a click triggers is testable without a browser.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from fakelib import explain, overlay, paths, regions
from fakelib import images as imagelib

ACCEPTED_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
FRIENDLY_FORMATS = "a JPG, PNG or WebP photo of a face"


@dataclass
class Verdict:
    """What the explorer shows for one upload.

    Attributes:
        ok: False when the file could not be analysed; `message` then says why, kindly.
        message: one line for the user: the verdict, or what went wrong and what to do.
        filename: the uploaded file's name.
        probability: p_fake (None when not ok).
        label: "fake" or "real" at `threshold` (None when not ok).
        threshold: the model's decision threshold.
        image: (size, size, 3) uint8 as the model saw it (None when not ok).
        result: the per-layer heatmaps (None when not ok).
        look_at: the face regions holding most heatmap evidence, best first (for a fake verdict).
        model_card: one line on the model behind the verdict: its data, scores and threshold, and a warning
            when it learnt from the synthetic demo faces only.
    """

    ok: bool
    message: str
    filename: str
    probability: float | None = None
    label: str | None = None
    threshold: float = 0.5
    image: np.ndarray | None = None
    result: explain.CamResult | None = None
    look_at: list[str] = field(default_factory=list)
    model_card: str = ""

    def to_json(self) -> dict:
        """JSON-ready summary (no arrays)."""
        return {"ok": self.ok, "message": self.message, "model_card": self.model_card, "filename": self.filename,
                "probability": self.probability,
                "label": self.label, "threshold": self.threshold, "look_at": self.look_at,
                "method": self.result.method if self.result else None,
                "layers": self.result.layers if self.result else []}


def model_choices(experiments_dir: str | Path = paths.EXPERIMENTS, best_dir: str | Path = paths.BEST,
                  extra: Sequence[str | Path] = (), pretrained_dir: str | Path | None = None) -> dict[str, str]:
    """Label -> path of every `model.keras` to offer: `extra` paths, the best model, each experiment, then the
    pretrained model shipped with the package (the default `pretrained_dir`)."""
    found: dict[str, str] = {}
    for path in extra:
        found[Path(path).name if Path(path).name != "model.keras" else str(path)] = str(path)
    best = Path(best_dir) / "model.keras"
    if best.is_file():
        found["best model"] = str(best)
    experiments = Path(experiments_dir)
    if experiments.is_dir():
        for path in sorted(experiments.glob("*/model.keras")):
            found[f"experiment {path.parent.name}"] = str(path)
    from fakelib.pretrained import PRETRAINED_DIR

    shipped = Path(pretrained_dir or PRETRAINED_DIR) / "model.keras"
    if shipped.is_file():
        found["pretrained (real faces)"] = str(shipped)
    return found


def uploaded_files(value) -> list[tuple[str, bytes]]:
    """(name, content) pairs from a FileUpload value: ipywidgets 8 (tuple of dicts) or 7 (dict of dicts)."""
    if not value:
        return []
    items = value.values() if isinstance(value, Mapping) else value
    files = []
    for item in items:
        name = item.get("name") or item.get("metadata", {}).get("name", "upload")
        files.append((str(name), bytes(item["content"])))
    return files


def top_regions(heatmaps: Mapping[str, np.ndarray], count: int = 3) -> list[str]:
    """Labels of the `count` regions with the highest lift in the layers' mean heatmap of one image."""
    mean_map = np.mean([maps[0] for maps in heatmaps.values()], axis=0)
    shares = regions.region_shares(mean_map)
    if np.isnan(shares).any():
        return []
    lift = shares / regions.area_shares(mean_map.shape[0])
    return [regions.REGION_LABELS[regions.REGIONS[index]] for index in np.argsort(-lift, kind="stable")[:count]]


class Explorer:
    """State and callbacks of the explore notebook; each public method is what one widget does.

    Args:
        choices: label -> model path (see `model_choices`).
        method: CAM method (`explain.list_methods()`).
        colormap: matplotlib colormap for the overlays (colour-blind-safe default).
        opacity: heatmap opacity, 0..1.
    """

    def __init__(self, choices: Mapping[str, str], method: str = "gradcam",
                 colormap: str = overlay.DEFAULT_COLORMAP, opacity: float = 0.5):
        explain.get_method(method)
        overlay.check_colormap(colormap)
        self.choices = dict(choices)
        self.model_label = next(iter(self.choices), None)
        self.method, self.colormap, self.opacity = method, colormap, overlay.check_opacity(opacity)
        self.upload: tuple[str, bytes] | None = None
        self.verdict: Verdict | None = None
        self._predictors: dict[str, object] = {}

    def predictor(self):
        """The `fakelib.predict.Predictor` of the chosen model, loaded once (threshold and preprocessing with it)."""
        from fakelib.predict import Predictor

        path = self.choices[self.model_label]
        if path not in self._predictors:
            self._predictors[path] = Predictor.from_path(path)
        return self._predictors[path]

    def choose_model(self, label: str) -> Verdict | None:
        if label not in self.choices:
            raise ValueError(f"unknown model {label!r}; available: {', '.join(self.choices)}")
        self.model_label = label
        return self.analyze()

    def choose_method(self, method: str) -> Verdict | None:
        explain.get_method(method)
        self.method = method
        return self.analyze()

    def set_upload(self, filename: str, content: bytes) -> Verdict:
        self.upload = (filename, bytes(content))
        return self.analyze()

    def set_colormap(self, colormap: str) -> None:
        """Only the picture changes: the heatmaps are not recomputed."""
        overlay.check_colormap(colormap)
        self.colormap = colormap

    def set_opacity(self, opacity: float) -> None:
        self.opacity = overlay.check_opacity(opacity)

    def analyze(self) -> Verdict | None:
        """Verdict and heatmaps of the current upload with the current model and method (None before an upload)."""
        if self.upload is None:
            return None
        self.verdict = self._analyze(*self.upload)
        return self.verdict

    def _analyze(self, filename: str, content: bytes) -> Verdict:
        if not self.choices:
            return Verdict(False, "No trained model found: train one first (notebooks/02_train.ipynb) "
                                  "or give a model path.", filename)
        if Path(filename).suffix.lower() not in ACCEPTED_SUFFIXES:
            return Verdict(False, f"'{filename}' is not an image this explorer reads: please upload "
                                  f"{FRIENDLY_FORMATS}.", filename)
        try:
            predictor = self.predictor()
        except (FileNotFoundError, ValueError) as error:
            return Verdict(False, f"The model could not be loaded: {error}", filename)
        try:
            image = predictor.prepare(content)
        except imagelib.ImageError as error:
            return Verdict(False, f"'{filename}' could not be read as an image ({error}). Please upload "
                                  f"{FRIENDLY_FORMATS}.", filename)
        result = explain.compute_cams(predictor.model, image[None], self.method)
        probability = float(result.probabilities[0])
        label = "fake" if probability >= predictor.threshold else "real"
        look_at = top_regions(result.heatmaps) if label == "fake" else []
        message = f"{label.upper()}: p(fake) = {probability:.2f} (threshold {predictor.threshold:.2f})"
        if look_at:
            message += f". Most evidence around the {', '.join(look_at)}."
        from fakelib.pretrained import card_line, model_card_facts

        return Verdict(True, message, filename, probability, label, float(predictor.threshold), image, result,
                       look_at, card_line(model_card_facts(self.choices[self.model_label])))

    def figure(self, path: str | Path | None = None) -> Figure | None:
        """The per-layer heatmap grid of the current verdict (None when there is nothing to show)."""
        verdict = self.verdict
        if verdict is None or not verdict.ok:
            return None
        return overlay.plot_cam_grid(verdict.image[None], verdict.result.heatmaps, [verdict.probability],
                                     colormap=self.colormap, opacity=self.opacity, threshold=verdict.threshold,
                                     method=verdict.result.method, path=path, tile_inches=2.4)


def build_app(explorer: Explorer):
    """The ipywidgets interface around `explorer`: upload, model, method, colormap, opacity, and the output."""
    import ipywidgets as widgets
    from IPython.display import Image, display

    upload = widgets.FileUpload(accept=",".join(ACCEPTED_SUFFIXES), multiple=False, description="Upload a face")
    model = widgets.Dropdown(options=list(explorer.choices) or ["(no model found)"], description="Model")
    method = widgets.Dropdown(options=explain.list_methods(), value=explorer.method, description="Method")
    colormap = widgets.Dropdown(options=list(dict.fromkeys([explorer.colormap, *overlay.COLOR_BLIND_SAFE])),
                                value=explorer.colormap, description="Colormap")
    opacity = widgets.FloatSlider(value=explorer.opacity, min=0.0, max=1.0, step=0.05, description="Opacity")
    message = widgets.HTML()
    output = widgets.Output()

    def show(*_):
        verdict = explorer.verdict
        message.value = "" if verdict is None else (f"<b>{html.escape(verdict.message)}</b>"
                                                    f"<br><small>{html.escape(verdict.model_card)}</small>")
        output.clear_output(wait=True)
        figure = explorer.figure()
        if figure is not None:
            with output:
                display(Image(data=overlay.to_png(figure)))  # a PNG shows the same under any matplotlib backend

    def on_upload(change):
        files = uploaded_files(change["new"])
        if files:
            explorer.set_upload(*files[-1])
        show()

    upload.observe(on_upload, names="value")
    if explorer.choices:
        model.observe(lambda change: (explorer.choose_model(change["new"]), show()), names="value")
    method.observe(lambda change: (explorer.choose_method(change["new"]), show()), names="value")
    colormap.observe(lambda change: (explorer.set_colormap(change["new"]), show()), names="value")
    opacity.observe(lambda change: (explorer.set_opacity(change["new"]), show()), names="value")
    controls = widgets.VBox([widgets.HBox([upload, model]), widgets.HBox([method, colormap]), opacity])
    app = widgets.VBox([controls, message, output])
    app.widgets = {"upload": upload, "model": model, "method": method, "colormap": colormap, "opacity": opacity,
                   "message": message, "output": output}  # handles for tests and for the notebook
    return app
