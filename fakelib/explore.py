"""The logic behind the explore notebook's widgets: an uploaded face -> verdict, probability and per-layer heatmaps.

`Explorer` holds the state (loaded models, the current upload, method, colormap, opacity) and does the work;
`build_app` only wires ipywidgets to it, so everything a click triggers is testable without a browser.
"""

from __future__ import annotations

import html
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from fakelib import contrast, explain, landmarks, overlay, paths, regions
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
        warnings: one line each when the upload is far from what the model learnt from (size, file format).
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
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """JSON-ready summary (no arrays)."""
        return {"ok": self.ok, "message": self.message, "model_card": self.model_card, "filename": self.filename,
                "probability": self.probability,
                "label": self.label, "threshold": self.threshold, "look_at": self.look_at,
                "warnings": self.warnings, "method": self.result.method if self.result else None,
                "layers": self.result.layers if self.result else []}


def model_choices(experiments_dir: str | Path = paths.EXPERIMENTS, best_dir: str | Path = paths.BEST,
                  extra: Sequence[str | Path] = (), pretrained_dir: str | Path | None = None) -> dict[str, str]:
    """Label -> path of every `model.keras` to offer: `extra` paths, the best model, each experiment, then the
    pretrained model shipped with the package (the default `pretrained_dir`).

    Labels say what a person can choose by (see `model_labels`): architecture, input side, the parameters that
    differ between the offered models, and the validation score; "best" and "pretrained" say where one came from.
    """
    entries: list[tuple[str, str]] = [("", str(path)) for path in extra]  # (role, path)
    best = Path(best_dir) / "model.keras"
    if best.is_file():
        entries.append(("best", str(best)))
    experiments = Path(experiments_dir)
    if experiments.is_dir():
        entries += [("", str(path)) for path in sorted(experiments.glob("*/model.keras"))]
    from fakelib.pretrained import PRETRAINED_DIR

    shipped = Path(pretrained_dir or PRETRAINED_DIR) / "model.keras"
    if shipped.is_file():
        entries.append(("pretrained", str(shipped)))
    found: dict[str, str] = {}
    for (role, path), label in zip(entries, model_labels([path for _, path in entries])):
        if role:
            label = f"{role}: {label}" if label else f"{role} model"
        label = label or f"model in {Path(path).parent.name}"
        unique, copy = label, 2
        while unique in found:  # two runs alike in every shown parameter still get an entry each
            unique, copy = f"{label} ({copy})", copy + 1
        found[unique] = path
    return found


# Parameters that say where and how a run was scheduled, not what model it trained: never part of a label.
UNLABELLED_PARAMETERS = ("data_dir", "seed", "threads", "experiments_dir")
# At most this many differing parameters in a label, so that it fits a dropdown.
MAX_LABEL_PARAMETERS = 3


def model_labels(model_paths: Sequence[str | Path]) -> list[str | None]:
    """One label per model: "npr, 128 px, dropout 0.4, val ROC-AUC 0.973", from params.yaml and metrics.json.

    The parameters shown besides the architecture and input side are those whose values differ between the
    models (at most `MAX_LABEL_PARAMETERS`), in params.yaml order. None for a model whose folder names no
    architecture (no params.yaml or metrics.json beside it).
    """
    facts = [_folder_facts(path) for path in model_paths]
    described = [params for params, _ in facts if params]  # a folder without params.yaml varies in nothing
    keys = list(dict.fromkeys(key for params in described for key in params))
    varying = [key for key in keys if key not in UNLABELLED_PARAMETERS + ("model", "image_size")
               and len({repr(params.get(key)) for params in described}) > 1][:MAX_LABEL_PARAMETERS]
    return [_label(params, metrics, varying) for params, metrics in facts]


def _label(params: Mapping, metrics: Mapping, varying: Sequence[str]) -> str | None:
    model = metrics.get("model") or params.get("model")
    if not model:
        return None
    parts = [str(model)] + ([f"{params['image_size']} px"] if params.get("image_size") else [])
    parts += [f"{key} {_compact(params[key])}" for key in varying if key in params]
    score = metrics.get("val_roc_auc")
    parts.append(f"val ROC-AUC {score:.3f}" if isinstance(score, (int, float)) else "no validation score")
    return ", ".join(parts)


def _compact(value) -> str:
    """A parameter value as a short label: lists joined by "-" ([16, 32, 64] -> 16-32-64)."""
    return "-".join(str(item) for item in value) if isinstance(value, (list, tuple)) else str(value)


def _folder_facts(model_path: str | Path) -> tuple[dict, dict]:
    """(flat params, metrics) from the files beside a model; empty for a missing or unreadable file, because a
    damaged run folder must not take the whole list of models down with it."""
    import yaml

    folder = Path(model_path).parent
    try:
        sections = yaml.safe_load((folder / "params.yaml").read_text()) if (folder / "params.yaml").is_file() else {}
    except (OSError, ValueError, yaml.YAMLError):
        sections = {}
    params = {key: value for section in (sections or {}).values() if isinstance(section, dict)
              for key, value in section.items()}
    try:
        metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
    except (OSError, ValueError):
        metrics = {}
    return params, metrics if isinstance(metrics, dict) else {}


# --------------------------------------------------------------------------------------- far from training data

FORMAT_OF_SUFFIX = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}
# An upload whose shorter side is below this share of the model's input side is "far smaller": the model pads
# it with grey as in training (never up-samples it), but it learnt from faces at least about this large.
SMALL_SHARE = 0.5
# Files looked at per training folder to learn its formats: enough for any mix, bounded for huge folders.
MAX_SCANNED_FILES = 50_000


@dataclass(frozen=True)
class TrainingFacts:
    """What the model learnt from, as far as its folder tells: input side and file formats.

    Attributes:
        input_side: the model's input side in pixels.
        formats: PIL format names of the training files ("JPEG", "PNG", "WEBP"); empty when unknown (the
            training folders are not on this machine).
        equalize_quality: JPEG quality every input was re-encoded at (0: none); with it, formats do not matter.
        web_caught: the share of its test fakes it caught once a website's processing removed their trace
            (`web_test.json` beside a packaged model, `pretrained._web_test`), or None.
    """

    input_side: int
    formats: frozenset[str] = frozenset()
    equalize_quality: int = 0
    web_caught: float | None = None


def training_facts(model_path: str | Path, input_side: int) -> TrainingFacts:
    """The `TrainingFacts` of a model: data folders from data_report.json (else params.yaml), formats by suffix."""
    folder = Path(model_path).parent
    params, _ = _folder_facts(model_path)
    report = _read_json(folder / "data_report.json")
    data_dirs = report.get("data_dir") or params.get("data_dir") or []
    data_dirs = [data_dirs] if isinstance(data_dirs, str) else list(data_dirs)
    formats = frozenset().union(*[_formats_in(paths.resolve(str(item))) for item in data_dirs])
    from fakelib.pretrained import WEB_TEST_FILE

    web_caught = (_read_json(folder / WEB_TEST_FILE).get("web") or {}).get("fake_rate")
    return TrainingFacts(int(input_side), formats, int(params.get("equalize_quality") or 0),
                         float(web_caught) if isinstance(web_caught, (int, float)) else None)


def _read_json(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return payload if isinstance(payload, dict) else {}


def _formats_in(data_dir: Path) -> frozenset[str]:
    """Formats of the image files under `data_dir/real` and `data_dir/fake` (at most `MAX_SCANNED_FILES`)."""
    found: set[str] = set()
    scanned = 0
    for class_dir in (data_dir / "real", data_dir / "fake"):
        for _, _, names in os.walk(class_dir):
            for name in names:
                scanned += 1
                found.add(FORMAT_OF_SUFFIX.get(Path(name).suffix.lower(), ""))
                if scanned >= MAX_SCANNED_FILES:
                    return frozenset(found - {""})
    return frozenset(found - {""})


def upload_warnings(content: bytes, facts: TrainingFacts) -> list[str]:
    """One line for a person per way the upload is far from the training data: much smaller, or a file format
    the model never saw. An upload the header of which cannot be read gets none (decoding reports it)."""
    try:
        with Image.open(io.BytesIO(content)) as image:
            file_format, side = image.format, min(image.size)
    except (OSError, ValueError):
        return []
    warnings = []
    if side < SMALL_SHARE * facts.input_side:
        warnings.append(f"This photo is {side} px across, far smaller than the {facts.input_side} px faces the model "
                        "learnt from: small faces lose most of the traces it reads, so trust this verdict less.")
    if facts.formats and not facts.equalize_quality and file_format not in facts.formats:
        seen = " and ".join(sorted(facts.formats))
        warnings.append(f"The model never saw a {file_format} file in training (only {seen}): the file format "
                        "alone can sway its verdict.")
    return warnings


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


def top_regions(heatmaps: Mapping[str, np.ndarray], count: int = 3, labels: np.ndarray | None = None) -> list[str]:
    """Labels of the `count` regions with the highest lift in the layers' mean heatmap of one image.

    `labels` is the face's own (size, size) region map (`fakelib.landmarks`); None = the aligned template.
    """
    mean_map = np.mean([maps[0] for maps in heatmaps.values()], axis=0)
    lift = contrast.image_lifts(mean_map[None], None if labels is None else labels[None])[0]
    if np.isnan(lift).all():
        return []
    ranked = np.argsort(-np.nan_to_num(lift, nan=-np.inf), kind="stable")
    return [regions.REGION_LABELS[regions.REGIONS[index]] for index in ranked[:count] if not np.isnan(lift[index])]


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
        self._about: dict[str, tuple[str, TrainingFacts]] = {}  # path -> (model card line, training facts)

    def predictor(self):
        """The `fakelib.predict.Predictor` of the chosen model, loaded once (threshold and preprocessing with it)."""
        from fakelib.predict import Predictor

        path = self.choices[self.model_label]
        if path not in self._predictors:
            self._predictors[path] = Predictor.from_path(path)
        return self._predictors[path]

    def about_model(self) -> tuple[str, TrainingFacts]:
        """The model card line and the `TrainingFacts` of the chosen model, read once per model."""
        from fakelib.pretrained import card_line, model_card_facts

        path = self.choices[self.model_label]
        if path not in self._about:
            folder = Path(path).parent
            described = (folder / "metrics.json").is_file() or (folder / "params.yaml").is_file()
            card = card_line(model_card_facts(path)) if described else (
                "This model has no card: no metrics.json or params.yaml beside it says what it learnt from or how "
                "well it did.")
            self._about[path] = (card, training_facts(path, self.predictor().image_size))
        return self._about[path]

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
            image, expert_view = predictor.prepare_inputs(content)
        except imagelib.ImageError as error:
            return Verdict(False, f"'{filename}' could not be read as an image ({error}). Please upload "
                                  f"{FRIENDLY_FORMATS}.", filename)
        result = explain.compute_cams(predictor.model, image[None], self.method)
        expert = predictor.expert_probabilities([expert_view])
        probability, threshold = predictor.judge(float(result.probabilities[0]), expert_view, expert)
        label = "fake" if probability >= threshold else "real"
        # the face's own regions from its landmarks (the template where no face is found): uploads are not aligned
        look_at = top_regions(result.heatmaps, labels=landmarks.region_maps(image[None]).labels[0]) \
            if label == "fake" else []
        message = f"{label.upper()}: p(fake) = {probability:.2f} (threshold {threshold:.2f}"
        message += (f", the one for images under {predictor.combination.expert_image_size} px, whose generator's "
                    "trace cannot survive)" if predictor.judged_small(expert_view) else ")")
        if look_at:
            message += f". Most evidence around the {', '.join(look_at)}."
        fired = expert is not None and bool(predictor.expert_fired(expert)[0])
        if fired:
            if predictor.residual is None and predictor.eye is None:
                message += (f"{'' if look_at else '.'} The trace expert found a generator's up-sampling trace in "
                            f"the pixels (its p(fake) {float(expert[0]):.2f}), which raised the verdict.")
            elif predictor.eye is None:
                message += (f"{'' if look_at else '.'} The trace experts found a generator's traces in the pixels' "
                            f"noise (their pooled p(fake) {float(expert[0]):.2f}), which raised the verdict.")
            else:
                message += (f"{'' if look_at else '.'} The experts found a generator's traces in the pixels' noise "
                            f"or in the eye region (their pooled p(fake) {float(expert[0]):.2f}), which raised "
                            "the verdict.")
        card, facts = self.about_model()
        web_caught = facts.web_caught
        if expert is not None and not fired and label == "real" and web_caught is not None and web_caught < 0.8:
            message += (". The experts found no generator trace, so this verdict rests on the face alone: on web "
                        "copies of its own test faces (shrunk and re-encoded, which removes such traces) this "
                        f"detector caught only {web_caught:.0%} of the fakes.")
        return Verdict(True, message, filename, probability, label, threshold, image, result,
                       look_at, card, upload_warnings(content, facts))

    def picture(self) -> bytes | None:
        """PNG of `figure()`, what the page shows (None when there is nothing to show)."""
        figure = self.figure()
        return None if figure is None else overlay.to_png(figure)

    def figure(self, path: str | Path | None = None) -> Figure | None:
        """The per-layer heatmap grid of the current verdict (None when there is nothing to show); an ensemble's
        members' maps are averaged per depth (`explain.by_depth`)."""
        verdict = self.verdict
        if verdict is None or not verdict.ok:
            return None
        return overlay.plot_cam_grid(verdict.image[None], explain.by_depth(verdict.result).heatmaps,
                                     [verdict.probability], colormap=self.colormap, opacity=self.opacity,
                                     threshold=verdict.threshold, method=verdict.result.method, path=path,
                                     tile_inches=2.4)


def verdict_html(verdict: Verdict | None) -> str:
    """The page's text for a verdict: the verdict in bold, the model card line beside it, then each warning.

    CSS classes name each part (`fakelib-verdict`, `fakelib-card`, `fakelib-warning`) for the browser test.
    """
    if verdict is None:
        return ""
    parts = [f'<div class="fakelib-verdict"><b>{html.escape(verdict.message)}</b></div>']
    if verdict.model_card:
        parts.append(f'<div class="fakelib-card"><small>About the model: {html.escape(verdict.model_card)}'
                     "</small></div>")
    parts += [f'<div class="fakelib-warning" style="color:#9a4d00">&#9888; {html.escape(warning)}</div>'
              for warning in verdict.warnings]
    return "".join(parts)


def build_app(explorer: Explorer):
    """The ipywidgets interface around `explorer`: upload, model, method, colormap, opacity, and the output."""
    import ipywidgets as widgets
    from IPython.display import display
    from IPython.display import Image as PngImage

    upload = widgets.FileUpload(accept=",".join(ACCEPTED_SUFFIXES), multiple=False, description="Upload a face")
    model = widgets.Dropdown(options=list(explorer.choices) or ["(no model found)"], description="Model",
                             layout=widgets.Layout(width="480px"))  # labels name parameters and a score
    method = widgets.Dropdown(options=explain.list_methods(), value=explorer.method, description="Method")
    colormap = widgets.Dropdown(options=list(dict.fromkeys([explorer.colormap, *overlay.COLOR_BLIND_SAFE])),
                                value=explorer.colormap, description="Colormap")
    opacity = widgets.FloatSlider(value=explorer.opacity, min=0.0, max=1.0, step=0.05, description="Opacity")
    message = widgets.HTML()
    output = widgets.Output()

    def show(*_):
        message.value = verdict_html(explorer.verdict)
        png = explorer.picture()
        output.clear_output(wait=png is not None)  # an error must not leave the last face's heatmaps beside it
        if png is not None:
            with output:
                display(PngImage(data=png))  # a PNG shows the same under any matplotlib backend

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
