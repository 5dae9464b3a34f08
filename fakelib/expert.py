"""A trace expert that can only add evidence to the robust detector's verdict.

The robust detector (`cnn` at 128 px, the default) reads the face itself; it keeps real photos from other
collections as real and catches generated faces whose publisher shrank or re-compressed them, but on faces like
its training source it ranks only about 0.90. A trace expert (`npr` on native pixels, trained on the folder
that holds both classes) reads the generator's up-sampling trace, which lifts that ranking, but votes "real" on
every generated face whose trace a publisher removed (docs/results.md, rounds 6 and 8). So the expert may only
add evidence, never take it away:

    s = logit(p_robust) + weight * max(0, logit(p_expert) - cutoff)
    p_fake = sigmoid(scale * s + bias)

A face without a trace the expert is sure of (`logit(p_expert) <= cutoff`, by default p_expert <= 0.5) keeps the
robust detector's logit; one with it is pushed toward "fake" by the expert's excess log-odds. Both members are
Platt-calibrated, so `weight` 1 adds the expert's log-odds as independent evidence would. The combination is then
calibrated again (Platt scaling on the validation images of the folders holding both classes, as for one model),
and its threshold is chosen on the combined validation probabilities like every saved threshold
(`metrics.choose_threshold`: Youden's J against the worst group of reals). Until round 16 it was the robust
detector's threshold carried through the calibration, so that a face the experts are silent on got exactly the
robust verdict; but that threshold did not see the experts' false alarms, and chosen on all validation reals it
kept only 67% of the training source's test reals (docs/results.md, round 16).

Two regimes (round 17). The combination's calibration learns, on the training source's files, that experts who
are silent mean "real" (its bias is about -2 log-odds): there every generated face still carries its trace. An
image smaller than the expert's input side was shrunk (or made small) by its publisher, and no trace survives
that, so there the experts' silence says nothing. A detector whose validation has both classes at or above the
expert's side therefore calibrates a smaller image apart (`small_scale`, `small_bias`), fitted on a web copy of
each such validation image (`predict.web_copy`: shrunk to 44-78% of the expert's side, re-encoded as JPEG), and
judges it at its own threshold (`small_threshold`, chosen with the same rule on those copies and on validation's
own small images). The members and the evidence-only rule are the same in both regimes; the side of an image's
centre square chooses the regime (`Combination.small`), and nothing else about the file is read.

A second expert can join under the same rule: the residual statistics of `fakelib.residuals` (round 14), a linear
model of the pixels' noise. `pooled` sums the two experts' log-odds above the cutoff into one expert probability,
so neither can take evidence away.

Files: a detector folder (an experiment folder or `fakelib/pretrained/`) may hold `expert.keras` (and
`residual.npz`) beside `model.keras`, and `combination.json` with the numbers above, the expert's input side and
the combination's own test figures; `fakelib.predict.Predictor.from_path` then scores with both members everywhere (predict, evaluate,
explore, practice, the benchmarks). Explanations stay those of the robust member: it is the one that reads faces.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

EXPERT_FILE = "expert.keras"
COMBINATION_FILE = "combination.json"
EYE_FILE = "eye.keras"  # an eye-region member's model (`fakelib.eyes.EyeMember`), when combination.json names it
# The trace expert as trained by `pretrained` and `bench_detect.py --models default,expert`: NPR at native 256 px,
# the base's six conv blocks at half their width (0.4 M parameters, 1.7 MB, so both members fit the package's
# 10 MB), on the first data folder only (the one holding both classes). Chosen on validation (docs/results.md,
# round 9): five full-width blocks ranked faces-dev validation better but added evidence to 19% of the validation
# reals from the other folders, this one to none. Round 10 trained the same expert on native 128 px windows
# (`train_crop`, scored on native windows): faces-dev ranked better, but it read real photos from other
# collections as generated, so it is not the default. 12 epochs (round 14; 28 before): about 270 s on 2 cores
# instead of 600-820 s, so the CNN, this expert and the residual model fit 30 minutes on a slow day too; with the
# residual model beside it, the three members validated within 0.004 of the 28-epoch expert's.
# members: 1, a single model whatever the detector's `train.members` (an ensemble is the detector's choice)
EXPERT_OVERRIDES = {"model": "npr", "image_size": 256, "conv_filters": [8, 16, 32, 64, 128, 256], "epochs": 12,
                    "members": 1}


# How the expert's input is made from an image (`fakelib.predict.Predictor.expert_view`): "resized", the model
# view at the expert's side (down-sampled with an area filter, small images padded), as an expert trained on
# whole inputs saw its training images; "native", the centre window of the image's own pixels, never resampled or
# padded (`images.native_window`), as an expert trained on native windows (`train_crop`) saw them.
EXPERT_VIEWS = ("resized", "native")


def view_for(config) -> str:
    """The expert view matching how an expert was trained: "native" after native training windows, else "resized"."""
    return "native" if 0 < config.data.train_crop < config.data.image_size else "resized"


def pooled(probabilities, cutoff: float = 0.0) -> np.ndarray:
    """Several experts' p_fake as one: sigmoid(cutoff + the sum of each expert's log-odds above `cutoff`).

    `Combination.logits` of the pooled probability adds exactly that sum (times the weight) to the robust logit:
    each expert can only add evidence, and two experts sure of a face add up as independent evidence would."""
    excess = sum(np.maximum(0.0, to_logit(p) - cutoff) for p in probabilities)
    return sigmoid(cutoff + excess)


def sigmoid(logits) -> np.ndarray:
    """1 / (1 + exp(-logits)) without overflow where a logit is far below zero (exp(-logaddexp(0, -x)))."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(logits, dtype=np.float64)))


def to_logit(probabilities) -> np.ndarray:
    """The logit of calibrated probabilities (clipped away from 0 and 1, where float32 saturates)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Combination:
    """How a robust detector and a trace expert make one calibrated `p_fake` (see the module docstring)."""

    weight: float = 1.0
    cutoff: float = 0.0
    scale: float = 1.0
    bias: float = 0.0
    robust_threshold: float = 0.5
    expert_image_size: int = 256
    expert_view: str = "resized"  # one of EXPERT_VIEWS: how the expert's input is made from an image
    threshold: float = 0.5  # of the combined p_fake, chosen on validation (`metrics.choose_threshold`)
    # The small-image regime (round 17; None without one): the calibration and threshold of an image whose centre
    # square is smaller than the expert's input side (see the module docstring)
    small_scale: float | None = None
    small_bias: float | None = None
    small_threshold: float | None = None

    @property
    def has_small_regime(self) -> bool:
        return self.small_scale is not None

    def small(self, sides) -> np.ndarray:
        """(n,) bool: the images in the small-image regime (centre square of `sides` px below the expert's input
        side); none without that regime."""
        sides = np.asarray(sides)
        return (sides < self.expert_image_size) if self.has_small_regime else np.zeros(sides.shape, dtype=bool)

    def logits(self, p_robust, p_expert) -> np.ndarray:
        """The combined (uncalibrated) logit: the expert's excess log-odds above `cutoff` added, never subtracted."""
        return to_logit(p_robust) + self.weight * np.maximum(0.0, to_logit(p_expert) - self.cutoff)

    def probabilities(self, p_robust, p_expert, sides=None) -> np.ndarray:
        """(n,) calibrated p_fake of the combination; `sides` (each image's centre-square side) choose the regime.

        Raises:
            ValueError: the combination has a small-image regime and `sides` is missing.
        """
        logits = self.logits(p_robust, p_expert)
        if not self.has_small_regime:
            return sigmoid(self.scale * logits + self.bias)
        if sides is None:
            raise ValueError("this detector calibrates small images apart: give each image's side")
        small = self.small(sides)
        return sigmoid(np.where(small, self.small_scale, self.scale) * logits
                       + np.where(small, self.small_bias, self.bias))

    def thresholds(self, sides) -> np.ndarray:
        """(n,) the threshold each image is judged at: `small_threshold` in the small-image regime, else
        `threshold`."""
        small = self.small(sides)
        return np.where(small, self.small_threshold if self.has_small_regime else 0.0, self.threshold)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict) -> Combination:
        """Raises ValueError (one line) for a combination.json that lacks a field or holds a non-number."""
        small_names = ("small_scale", "small_bias", "small_threshold")
        try:
            small = {name: float(payload[name]) for name in small_names if payload.get(name) is not None}
            combination = cls(**{name: float(payload[name]) for name in ("weight", "cutoff", "scale", "bias",
                                                                          "robust_threshold", "threshold")},
                              expert_image_size=int(payload["expert_image_size"]),
                              expert_view=str(payload.get("expert_view", "resized")),  # files before round 10
                              **small)  # files before round 17 have no small-image regime
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{COMBINATION_FILE} is not a valid combination ({type(error).__name__}: {error})") \
                from None
        if combination.expert_view not in EXPERT_VIEWS:
            raise ValueError(f"{COMBINATION_FILE}: expert_view {combination.expert_view!r} is not one of "
                             f"{', '.join(EXPERT_VIEWS)}")
        if not (combination.scale > 0 and combination.weight >= 0 and 0 < combination.robust_threshold < 1
                and 0 < combination.threshold < 1):
            raise ValueError(f"{COMBINATION_FILE}: scale must be > 0, weight >= 0, robust_threshold and threshold in "
                             "(0, 1)")
        if small and (len(small) < len(small_names) or not (small["small_scale"] > 0
                                                             and 0 < small["small_threshold"] < 1)):
            raise ValueError(f"{COMBINATION_FILE}: a small-image regime needs small_scale > 0, small_bias and "
                             "small_threshold in (0, 1)")
        return combination


def read(folder: str | Path) -> dict | None:
    """`combination.json` of a detector folder, or None when the folder holds one model only."""
    path = Path(folder) / COMBINATION_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None


def expert_config(config):
    """The trace expert's configuration: `config` with `EXPERT_OVERRIDES`, trained on its first data folder."""
    from fakelib.data import data_dirs

    return config.replace(**EXPERT_OVERRIDES, data_dir=data_dirs(config.data)[0])


def _split_probabilities(model, config, splits: tuple[str, ...], cache_root=None) -> dict[str, tuple]:
    """{split: (relpaths, labels, paired, p_fake, groups)} of `config`'s data, loaded once at `model`'s input
    side; groups are the images' sources (`data.PreparedData.split_groups`)."""
    import dataclasses

    from fakelib.data import load_dataset
    from fakelib.models import input_size, predict_probabilities

    prepared = load_dataset(dataclasses.replace(config.data, image_size=input_size(model)), cache_root)
    scored = {}
    for split in splits:
        images, labels = prepared.subset(split)
        scored[split] = (prepared.relpaths[prepared.splits == split], labels, prepared.paired_mask(split),
                         predict_probabilities(model, images), prepared.split_groups(split))
    return scored


def dataset_file(config, relpath: str) -> Path:
    """The file behind a relpath of `config`'s data (`data.load_dataset`: with several folders, a relpath
    carries its folder's name first)."""
    from fakelib import paths
    from fakelib.data import data_dirs

    roots = [paths.resolve(folder, paths.ROOT) for folder in data_dirs(config.data)]
    if len(roots) == 1:
        return roots[0] / relpath
    name, _, rest = relpath.partition("/")
    return {root.name: root for root in roots}[name] / rest


def _native_probabilities(model, config, relpaths: np.ndarray) -> np.ndarray:
    """(n,) p_fake of `model` on the native windows (`images.native_window`) of the files `relpaths` of
    `config`'s data; relpaths of several folders carry their folder's name first (`data.load_dataset`)."""
    from fakelib.images import native_window, open_image, read_image_bytes
    from fakelib.models import input_size, predict_probabilities

    side, quality = input_size(model), config.data.equalize_quality
    windows = [native_window(open_image(read_image_bytes(dataset_file(config, str(relpath)))), side, quality)
               for relpath in relpaths]
    return predict_probabilities(model, windows, pad=False)


def small_copy_sides(expert_side: int) -> tuple[int, int]:
    """The sides of the web copies the small-image regime is fitted on: `predict.WEB_SIDES` (112-200 px) for a
    256 px expert, the same shares of another expert's side (below it), never under `images.MIN_SIDE`, which no
    detector scores."""
    from fakelib.images import MIN_SIDE
    from fakelib.predict import WEB_SIDES

    return tuple(max(MIN_SIDE, round(expert_side * side / 256)) for side in WEB_SIDES)


def _web_copy_probabilities(scorer, config, relpaths: np.ndarray, sides: tuple[int, int]
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n,) the robust member's and (n,) the experts' p_fake on web copies (`predict.web_copy` at `sides`) of the
    files `relpaths` of `config`'s data, scored by `scorer`, a `predict.Predictor` holding the members, and (n,)
    the copies' sides."""
    from fakelib.images import read_image_bytes
    from fakelib.predict import web_copy

    inputs = [scorer.prepare_inputs(web_copy(read_image_bytes(dataset_file(config, str(relpath))), sides))
              for relpath in relpaths]
    return (*scorer.member_probabilities(inputs), np.array([expert.side for _, expert in inputs]))


def fit(robust_dir: str | Path, expert_model: str | Path, weight: float = 1.0, cutoff: float = 0.0,
        cache_root=None, expert_view: str = "resized", residual=None,
        residual_memo: dict | None = None, eye=None) -> tuple[Combination, dict]:
    """Fit the combination of a finished robust run and a trained expert on the robust run's validation split;
    returns it and its figures on the test split (the same keys as a run's metrics.json where they apply).

    The expert scores the same files as the robust run at its own input side (never up-sampled), in
    `expert_view` (one of `EXPERT_VIEWS`). Validation is taken as the files are (not size-matched): the test
    split it is judged on is not matched either. With `residual` (a `fakelib.residuals.ResidualModel`), its
    evidence is pooled with the trace expert's (`pooled`) before the combination is fitted; `residual_memo`
    holds features already computed (`residuals.file_features`). With `eye` (an uncalibrated
    `fakelib.eyes.EyeMember`), the eye model scores each file's eye square, is Platt-scaled on the validation
    images of the folders holding both classes (where a face was found) and pooled too; its scaling is returned
    in the figures (`eye_platt_scale`, `eye_platt_bias`).

    Where validation holds both classes of the paired source at or above the expert's side, the small-image regime
    is fitted too (module docstring): its Platt scaling on a web copy of each of those images (`small_copy_sides`,
    scored through `predict.Predictor`, as every later use scores), its threshold on those copies and on
    validation's own smaller images; the native threshold is then chosen on the native images alone. The copies
    are `bench_detect`'s `web_val` copies: for a combined detector `web_val` is fitted on, and `web_test` is the
    held-out check.
    """
    from dataclasses import replace

    from fakelib import metrics as metriclib
    from fakelib.config import load_experiment
    from fakelib.images import square_side
    from fakelib.models import input_size, load_model

    robust_dir = Path(robust_dir)
    config = load_experiment(robust_dir / "params.yaml")
    robust_threshold = float(json.loads((robust_dir / "metrics.json").read_text())["threshold"])
    robust, expert = load_model(robust_dir / "model.keras"), load_model(expert_model)
    by_robust = _split_probabilities(robust, config, ("val", "test"), cache_root)
    if expert_view == "native":
        by_expert = {split: (relpaths, labels, paired, _native_probabilities(expert, config, relpaths), groups)
                     for split, (relpaths, labels, paired, _, groups) in by_robust.items()}
    else:
        by_expert = _split_probabilities(expert, config, ("val", "test"), cache_root)
    scored, eye_raw, relpaths, sides, split_groups = {}, {}, {}, {}, {}
    for split in ("val", "test"):
        paths_r, labels, paired, p_robust, groups = by_robust[split]
        paths_e, _, _, p_expert, _ = by_expert[split]
        common, index_r, index_e = np.intersect1d(paths_r, paths_e, return_indices=True)
        relpaths[split] = common
        sides[split] = np.array([square_side(dataset_file(config, str(relpath))) for relpath in common], dtype=int)
        split_groups[split] = groups[index_r]
        scored[split] = (labels[index_r], paired[index_r], p_robust[index_r], p_expert[index_e])
        if residual is not None:
            from fakelib.residuals import file_features

            rows = file_features([dataset_file(config, str(relpath)) for relpath in common], residual.side,
                                 memo=residual_memo)
            scored[split] += (residual.probabilities(rows),)
        if eye is not None:
            from fakelib.eyes import eye_input
            from fakelib.images import open_image, read_image_bytes

            squares = [eye_input(open_image(read_image_bytes(dataset_file(config, str(relpath)))))
                       for relpath in common]
            eye_raw[split] = eye.raw_probabilities(squares)
    eye_figures = {}
    if eye is not None:
        labels, paired = scored["val"][:2]
        found = paired & ~np.isnan(eye_raw["val"])
        eye_scale, eye_bias = metriclib.fit_platt(labels[found], to_logit(eye_raw["val"][found]))
        eye = replace(eye, scale=float(eye_scale), bias=float(eye_bias))
        for split in ("val", "test"):
            scored[split] += (eye.calibrated(eye_raw[split]),)
        eye_figures = {"eye_platt_scale": eye.scale, "eye_platt_bias": eye.bias,
                       "eye_found_val": float(np.mean(~np.isnan(eye_raw["val"]))),
                       "eye_found_test": float(np.mean(~np.isnan(eye_raw["test"])))}
    draft = Combination(weight, cutoff, robust_threshold=robust_threshold, expert_image_size=input_size(expert),
                        expert_view=expert_view)
    labels, paired, p_robust, p_expert = scored["val"][:4]

    def firing(prefix: str, p: np.ndarray) -> dict:
        """How often an expert adds evidence on validation: on the paired source's fakes and reals, and on the
        reals of the other folders (the nearest thing to a real photo from elsewhere that validation holds: an
        expert that fires on them will call such photos fake)."""
        fires = to_logit(p) > cutoff
        masks = {"fakes": paired & (labels == 1), "reals": paired & (labels == 0),
                 "other_reals": ~paired & (labels == 0)}
        return {f"{prefix}_fires_val_{name}": float(fires[mask].mean()) if mask.any() else None
                for name, mask in masks.items()}

    fired = firing("expert", p_expert)
    member_figures = {}
    names = ["trace"] + (["residual"] if residual is not None else []) + (["eye"] if eye is not None else [])
    if len(names) > 1:
        labels_test = scored["test"][0]
        fired = {**{key: value for index, name in enumerate(names)
                    for key, value in firing(name, scored["val"][3 + index]).items()},
                 **firing("expert", pooled(scored["val"][3:], cutoff))}
        member_figures = {f"{name}_test_roc_auc": metriclib.binary_metrics(labels_test, scored["test"][3 + index])[
            "roc_auc"] for index, name in enumerate(names)}
        scored = {split: (*values[:3], pooled(values[3:], cutoff)) for split, values in scored.items()}
        p_expert = scored["val"][3]
    # two regimes where validation has both classes of the paired source at or above the expert's side
    native = sides["val"] >= draft.expert_image_size
    regimes = len(np.unique(labels[paired & native])) == 2
    fit_on = paired & native if regimes else paired if len(np.unique(labels[paired])) == 2 else np.ones_like(paired)
    scale, bias = metriclib.fit_platt(labels[fit_on], draft.logits(p_robust, p_expert)[fit_on])
    combination = Combination(weight, cutoff, scale, bias, robust_threshold, draft.expert_image_size, expert_view)
    small_figures = {}
    if regimes:
        from fakelib.predict import Predictor

        scorer = Predictor(robust, equalize_quality=config.data.equalize_quality, expert=expert, combination=draft,
                           residual=residual, eye=eye)
        copies = paired & native
        p_robust_web, p_expert_web, web_sides = _web_copy_probabilities(
            scorer, config, relpaths["val"][copies], small_copy_sides(draft.expert_image_size))
        small_scale, small_bias = metriclib.fit_platt(labels[copies], combination.logits(p_robust_web, p_expert_web))
        combination = replace(combination, small_scale=float(small_scale), small_bias=float(small_bias))
        # the small regime's threshold: on the web copies and on validation's own small images, each its group
        small_labels = np.concatenate([labels[copies], labels[~native]])
        small_p = np.concatenate([
            combination.probabilities(p_robust_web, p_expert_web, web_sides),
            combination.probabilities(p_robust[~native], p_expert[~native], sides["val"][~native])])
        small_groups = np.concatenate([[f"{group}-web" for group in split_groups["val"][copies]],
                                       split_groups["val"][~native]])
        combination = replace(combination, small_threshold=metriclib.choose_threshold(small_labels, small_p,
                                                                                      small_groups))
        small = metriclib.binary_metrics(small_labels, small_p, combination.small_threshold)
        small_figures = {"small_n_val": small["n"], "small_n_val_web_copies": int(copies.sum()),
                         **metriclib.prefixed(small, "small_val", keys=("roc_auc", "f1", "real_rate", "fake_rate")),
                         "small_val_ece": metriclib.calibration_errors(small_labels, small_p)["ece"],
                         "small_copy_sides": list(small_copy_sides(draft.expert_image_size))}
    val_probabilities = combination.probabilities(p_robust, p_expert, sides["val"])
    threshold_on = native if regimes else np.ones_like(native)
    combination = replace(combination, threshold=metriclib.choose_threshold(
        labels[threshold_on], val_probabilities[threshold_on], split_groups["val"][threshold_on]))
    val = metriclib.binary_metrics(labels, val_probabilities, combination.thresholds(sides["val"]))
    val_groups = metriclib.group_rates(labels, val_probabilities, split_groups["val"],
                                       combination.thresholds(sides["val"]))
    labels, _, p_robust, p_expert = scored["test"]
    probabilities = combination.probabilities(p_robust, p_expert, sides["test"])
    test = metriclib.binary_metrics(labels, probabilities)
    test_at = metriclib.binary_metrics(labels, probabilities, combination.thresholds(sides["test"]))
    figures = {
        **metriclib.prefixed(val, "val", keys=("roc_auc", "average_precision", "f1")), "n_val": val["n"],
        **metriclib.prefixed(test, "test", keys=("roc_auc", "average_precision")),
        **metriclib.prefixed(test_at, "test", "_at_threshold", keys=metriclib.THRESHOLD_KEYS),
        "confusion_matrix": test_at["confusion_matrix"],
        **metriclib.prefixed(metriclib.calibration_errors(labels, probabilities), "test", keys=("ece", "brier")),
        **metriclib.prefixed(metriclib.ece_floor(probabilities), "test_ece_floor", keys=("mean", "p95")),
        "n_test": int(len(labels)), **fired, **member_figures, **eye_figures, **small_figures,
        "expert_test_roc_auc": metriclib.binary_metrics(labels, p_expert)["roc_auc"],
        "robust_test_roc_auc": metriclib.binary_metrics(labels, p_robust)["roc_auc"],
        "val_groups": val_groups,
        "test_groups": metriclib.group_rates(labels, probabilities, split_groups["test"],
                                             combination.thresholds(sides["test"])),
    }
    return combination, figures


def assemble(robust_dir: str | Path, expert_dir: str | Path, out_dir: str | Path, weight: float = 1.0,
             cutoff: float = 0.0, cache_root=None, residual: bool = True, eye_dir: str | Path | None = None) -> dict:
    """A detector folder from a finished robust run and a finished expert run: the robust run's files, the expert
    as `expert.keras`, and `combination.json` (fitted on validation, with its test figures and both runs'
    training seconds) written last, so a folder without it is never taken for a finished combination.

    With `residual`, a residual-statistics model (`fakelib.residuals`) is first fitted on the robust run's data
    folders and saved as `residual.npz`; its evidence is pooled with the trace expert's (`pooled`). With
    `eye_dir` (a finished run trained on eye squares, `python -m fakelib eyes`), its model joins as a third
    evidence-only member (`fakelib.eyes.EyeMember`), saved as `eye.keras`.

    Raises:
        FileNotFoundError: a run is not finished (no model.keras or metrics.json).
    """
    from fakelib.atomic import write_json

    robust_dir, expert_dir, out_dir = Path(robust_dir), Path(expert_dir), Path(out_dir)
    eye_dir = None if eye_dir is None else Path(eye_dir)
    for run in (robust_dir, expert_dir) + (() if eye_dir is None else (eye_dir,)):
        missing = [name for name in ("model.keras", "metrics.json", "params.yaml") if not (run / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{run} is not a finished run: missing {', '.join(missing)}")
    from fakelib.config import load_experiment
    from fakelib.data import data_dirs

    expert_config = load_experiment(expert_dir / "params.yaml")
    expert_view = view_for(expert_config)  # scored as it was trained
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / COMBINATION_FILE).unlink(missing_ok=True)
    residual_model, residual_payload, memo = None, {}, {}
    if residual:
        from fakelib import residuals

        (out_dir / residuals.RESIDUAL_FILE).unlink(missing_ok=True)
        trained = residuals.train(load_experiment(robust_dir / "params.yaml"), out_dir / residuals.RESIDUAL_FILE,
                                  cache_root, memo=memo)
        residual_model = residuals.ResidualModel.load(out_dir / residuals.RESIDUAL_FILE)
        residual_payload = {"residual_file": residuals.RESIDUAL_FILE, **trained}
    (out_dir / EYE_FILE).unlink(missing_ok=True)
    eye, eye_payload = None, {}
    if eye_dir is not None:
        from fakelib.eyes import EyeMember
        from fakelib.models import load_model

        eye_config, eye_metrics = load_experiment(eye_dir / "params.yaml"), json.loads(
            (eye_dir / "metrics.json").read_text())
        eye = EyeMember(load_model(eye_dir / "model.keras"), equalize_quality=eye_config.data.equalize_quality)
        eye_payload = {"eye_file": EYE_FILE, "eye_equalize_quality": eye.equalize_quality,
                       "eye_train_seconds": eye_metrics.get("train_seconds"), "eye_epochs": eye_metrics.get("epochs_run"),
                       "eye_param_count": eye_metrics.get("param_count")}
    combination, figures = fit(robust_dir, expert_dir / "model.keras", weight, cutoff, cache_root, expert_view,
                               residual_model, memo, eye)
    if out_dir.resolve() != robust_dir.resolve():
        for path in robust_dir.iterdir():
            if path.is_file():
                shutil.copy2(path, out_dir / path.name)
    shutil.copy2(expert_dir / "model.keras", out_dir / EXPERT_FILE)
    if eye_dir is not None:
        shutil.copy2(eye_dir / "model.keras", out_dir / eye_payload["eye_file"])
    seconds = [json.loads((run / "metrics.json").read_text()).get("train_seconds") for run in (robust_dir, expert_dir)]
    expert_metrics = json.loads((expert_dir / "metrics.json").read_text())
    payload = {**combination.to_dict(), "expert_file": EXPERT_FILE, "expert_model": expert_metrics.get("model"),
               "expert_param_count": expert_metrics.get("param_count"), "expert_epochs": expert_metrics.get("epochs_run"),
               "expert_data": [Path(folder).name for folder in data_dirs(expert_config.data)],
               "expert_train_crop": expert_config.data.train_crop if expert_view == "native" else 0,
               "train_seconds": round(sum(value or 0.0 for value in seconds)
                                      + residual_payload.get("residual_train_seconds", 0.0)
                                      + (eye_payload.get("eye_train_seconds") or 0.0), 2),
               "robust_train_seconds": seconds[0], "expert_train_seconds": seconds[1], **residual_payload,
               **eye_payload,
               **figures}
    write_json(out_dir / COMBINATION_FILE, payload, indent=2)
    return payload
