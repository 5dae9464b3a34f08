"""`params.yaml` -> frozen, validated dataclasses; sweep expansion (cartesian product); stable experiment ids.

The dataclass defaults below are the one source of every hyperparameter's default. The base section of
params.yaml and the parameters cell of notebooks/02_train.ipynb repeat them for the reader, and
tests/test_config.py fails when either disagrees.

Every key lives in one section (`data`, `augment`, `model`, `train`) and its name is unique across sections,
so an experiment is also a flat `{key: value}` dict: that flat form is what the sweep lists, what papermill
injects into `notebooks/02_train.ipynb` and what `results.csv` records.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fakelib.checks import ConfigError, not_allowed
from fakelib.paramsfile import load_yaml, read_text

SECTIONS = ("data", "augment", "model", "train")
VALIDATION_METRICS = ("val_roc_auc", "val_average_precision", "val_f1", "val_accuracy", "val_loss")
MAX_EXPERIMENTS = 1_000  # a sweep with more combinations is refused unless the caller raises the limit


def _check_range(key: str, value: float, low: float, high: float, *, low_open: bool = False,
                 high_open: bool = False) -> None:
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        left, right = ("(" if low_open else "["), (")" if high_open else "]")
        raise not_allowed(key, value, f"a number in {left}{low}, {high}{right}")


def _check_choice(key: str, value: str, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise not_allowed(key, value, "one of " + ", ".join(choices))


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Return `value` converted to `annotation` (int, float, bool, str, tuples of those, or a union)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                return _coerce(key, value, option)
            except ConfigError:
                continue
        raise not_allowed(key, value, " or ".join(_describe(option) for option in typing.get_args(annotation)))
    if origin is tuple:
        return _coerce_tuple(key, value, typing.get_args(annotation))
    if annotation is bool:
        if not isinstance(value, bool):
            raise not_allowed(key, value, "true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise not_allowed(key, value, "an integer")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise not_allowed(key, value, "a finite number")  # NaN passes every range check, inf overflows the optimizer
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise not_allowed(key, value, "a string")
        return value
    raise TypeError(f"unsupported annotation {annotation!r} for {key}")


def _coerce_tuple(key: str, value: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise not_allowed(key, value, f"a list ({_describe(tuple[args])})")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_coerce(key, item, args[0]) for item in value)
    if len(value) != len(args):
        raise not_allowed(key, value, f"a list of {len(args)} values")
    return tuple(_coerce(key, item, arg) for item, arg in zip(value, args))


def _describe(annotation: Any) -> str:
    if typing.get_origin(annotation) is tuple:
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}s"
        return f"a list of {len(args)} numbers"
    return getattr(annotation, "__name__", str(annotation))


class _Section:
    """Mixin: type-check and coerce every field on construction, then run `validate()`."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for item in dataclasses.fields(self):
            key = f"{self.section}.{item.name}"
            object.__setattr__(self, item.name, _coerce(key, getattr(self, item.name), hints[item.name]))
        self.validate()

    section = ""

    def validate(self) -> None:
        """Range checks; overridden per section."""


@dataclass(frozen=True)
class DataConfig(_Section):
    """Where the images are and how they become model inputs."""

    data_dir: str | tuple[str, ...] = "data/demo"
    image_size: int = 128
    train_crop: int = 0
    val_ratio: float = 0.15
    test_ratio: float = 0.15
    equalize_quality: int = 0
    max_images_per_class: int = 0
    train_fraction: float = 1.0
    section = "data"

    def validate(self) -> None:
        _check_range("data.image_size", self.image_size, 32, 1024)
        if self.train_crop != 0:
            _check_range("data.train_crop", self.train_crop, 32, self.image_size)
        _check_range("data.val_ratio", self.val_ratio, 0.0, 0.5, low_open=True)
        _check_range("data.test_ratio", self.test_ratio, 0.0, 0.5, low_open=True)
        if self.equalize_quality != 0:
            _check_range("data.equalize_quality", self.equalize_quality, 30, 100)
        _check_range("data.max_images_per_class", self.max_images_per_class, 0, 10_000_000)
        _check_range("data.train_fraction", self.train_fraction, 0.0, 1.0, low_open=True)
        if not self.data_dir or (not isinstance(self.data_dir, str) and not all(self.data_dir)):
            raise not_allowed("data.data_dir", self.data_dir, "a folder with real/ and fake/, or a list of such folders")


@dataclass(frozen=True)
class AugmentConfig(_Section):
    """Training-time augmentation, each with its probability or strength (0 turns it off)."""

    flip: float = 0.5
    crop: float = 0.0
    color_jitter: float = 0.0
    erase: float = 0.0
    mixup: float = 0.0  # Beta(mixup, mixup) weight of mixup (`data.mix_batch`); 0 = off
    blur_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    jpeg_prob: float = 0.3
    jpeg_quality: tuple[int, int] = (70, 100)
    double_jpeg_prob: float = 0.2
    rescale_prob: float = 0.25
    rescale_min: float = 0.5
    sharpen_prob: float = 0.05
    noise_prob: float = 0.05
    noise_sigma: float = 4.0
    match_sizes: float = 1.0
    section = "augment"
    # Every step that can change pixels, with the value that turns it off (`off()`).
    OFF = {"flip": 0.0, "crop": 0.0, "color_jitter": 0.0, "erase": 0.0, "mixup": 0.0, "blur_prob": 0.0, "jpeg_prob": 0.0, "double_jpeg_prob": 0.0,
           "rescale_prob": 0.0, "sharpen_prob": 0.0, "noise_prob": 0.0, "match_sizes": 0.0}

    @classmethod
    def off(cls, **changes: Any) -> AugmentConfig:
        """No augmentation at all, except the `changes` given (for one step alone, in tests and benchmarks)."""
        return cls(**{**cls.OFF, **changes})

    def validate(self) -> None:
        for name in ("flip", "erase", "blur_prob", "jpeg_prob", "double_jpeg_prob", "rescale_prob", "sharpen_prob",
                     "noise_prob", "match_sizes"):
            _check_range(f"augment.{name}", getattr(self, name), 0.0, 1.0)
        _check_range("augment.rescale_min", self.rescale_min, 0.1, 1.0)
        _check_range("augment.noise_sigma", self.noise_sigma, 0.5, 50.0)
        _check_range("augment.crop", self.crop, 0.0, 0.5)
        _check_range("augment.color_jitter", self.color_jitter, 0.0, 1.0)
        _check_range("augment.mixup", self.mixup, 0.0, 2.0)
        low, high = self.blur_sigma
        if not 0 < low <= high <= 10:
            raise not_allowed("augment.blur_sigma", list(self.blur_sigma), "[low, high] with 0 < low <= high <= 10")
        low, high = self.jpeg_quality
        if not 10 <= low <= high <= 100:
            raise not_allowed("augment.jpeg_quality", list(self.jpeg_quality), "[low, high] with 10 <= low <= high <= 100")


@dataclass(frozen=True)
class ModelConfig(_Section):
    """The architecture: a registry name plus the parameters its builder takes."""

    model: str = "cnn"
    conv_filters: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    kernel_sizes: int | tuple[int, ...] = 3
    pooling: str = "max"
    batch_norm: bool = True
    dropout: float = 0.3
    dense_units: tuple[int, ...] = (64,)
    l2: float = 1e-4
    section = "model"

    def validate(self) -> None:
        from fakelib.models import list_models  # deferred: the registry imports Keras

        _check_choice("model.model", self.model, list_models())
        if not self.conv_filters or any(not 1 <= filters <= 1024 for filters in self.conv_filters):
            raise not_allowed("model.conv_filters", list(self.conv_filters), "a non-empty list of integers in [1, 1024]")
        kernels = self.kernels
        if len(kernels) != len(self.conv_filters):
            raise ConfigError(
                f"model.kernel_sizes = {list(kernels)} has {len(kernels)} entries but model.conv_filters = "
                f"{list(self.conv_filters)} has {len(self.conv_filters)}; give one kernel size per conv layer")
        if any(kernel not in (1, 3, 5, 7) for kernel in kernels):
            raise not_allowed("model.kernel_sizes", list(kernels), "kernel sizes from 1, 3, 5, 7")
        _check_choice("model.pooling", self.pooling, ("max", "avg", "stride", "none"))
        _check_range("model.dropout", self.dropout, 0.0, 1.0, high_open=True)
        if any(not 1 <= units <= 4096 for units in self.dense_units):
            raise not_allowed("model.dense_units", list(self.dense_units), "a list of integers in [1, 4096] (may be empty)")
        _check_range("model.l2", self.l2, 0.0, 1.0)

    @property
    def kernels(self) -> tuple[int, ...]:
        """One kernel size per conv layer (a single `kernel_sizes` integer applies to every layer)."""
        if isinstance(self.kernel_sizes, int):
            return (self.kernel_sizes,) * len(self.conv_filters)
        return self.kernel_sizes

    def builder_params(self) -> dict[str, Any]:
        """Keyword arguments for `fakelib.models.create_model` (everything but the name)."""
        params = {key: _plain(value) for key, value in dataclasses.asdict(self).items() if key != "model"}
        params["kernel_sizes"] = list(self.kernels)
        return params


@dataclass(frozen=True)
class TrainConfig(_Section):
    """The optimisation: epochs, batch, learning rate and its schedule, early stopping, seed."""

    epochs: int = 28
    batch_size: int = 32
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    patience: int = 8
    bn_recompute_batches: int = 10
    ema: float = 0.0
    members: int = 1
    seed: int = 0
    threads: int = 0
    section = "train"

    def validate(self) -> None:
        _check_range("train.epochs", self.epochs, 1, 1000)
        _check_range("train.batch_size", self.batch_size, 1, 4096)
        _check_range("train.learning_rate", self.learning_rate, 0.0, 1.0, low_open=True)
        _check_choice("train.lr_schedule", self.lr_schedule, ("constant", "cosine", "plateau"))
        _check_range("train.patience", self.patience, 0, 1000)
        _check_range("train.bn_recompute_batches", self.bn_recompute_batches, 0, 10_000)
        if self.ema:
            _check_range("train.ema", self.ema, 0.5, 1.0, high_open=True)
        _check_range("train.members", self.members, 1, 8)
        _check_range("train.seed", self.seed, 0, 2**31 - 1)
        if self.seed + self.members - 1 > 2**31 - 1:
            last = self.seed + self.members - 1
            raise not_allowed("train.seed", self.seed, f"at most {2**31 - self.members}: the draws of "
                              f"train.members = {self.members} take seeds {self.seed} to {last}")
        _check_range("train.threads", self.threads, 0, 256)


def model_defaults() -> dict[str, Any]:
    """{key: default} of the model section but the architecture's name: what `create_model` fills in."""
    return {item.name: _plain(item.default) for item in dataclasses.fields(ModelConfig) if item.name != "model"}


SECTION_CLASSES: dict[str, type[_Section]] = {
    "data": DataConfig, "augment": AugmentConfig, "model": ModelConfig, "train": TrainConfig}
# Keys that change where or how fast a run happens but never its result: left out of the experiment id.
NON_RESULT_KEYS = frozenset({"threads"})
# Keys added after experiments were first run, left out of the id at these values, so the experiments a sweep
# already finished keep their ids (and are not run again) when a version adds a setting they did not use.
LATER_KEYS = {"members": 1, "train_fraction": 1.0}


def _key_sections() -> dict[str, str]:
    return {item.name: section for section, cls in SECTION_CLASSES.items() for item in dataclasses.fields(cls)}


KEY_SECTIONS: dict[str, str] = _key_sections()


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: the four sections, immutable and already validated."""

    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> ExperimentConfig:
        """Build from `{key: value}`; unknown keys are a `ConfigError` that lists the known ones."""
        grouped: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
        for key, value in flat.items():
            if key not in KEY_SECTIONS:
                raise ConfigError(f"unknown parameter {key!r}; known: {', '.join(sorted(KEY_SECTIONS))}")
            grouped[KEY_SECTIONS[key]][key] = value
        return cls(**{section: SECTION_CLASSES[section](**values) for section, values in grouped.items()})

    @classmethod
    def from_sections(cls, sections: Mapping[str, Any]) -> ExperimentConfig:
        """Build from the nested form of params.yaml (`{section: {key: value}}`)."""
        flat: dict[str, Any] = {}
        for section, values in sections.items():
            if section not in SECTIONS:
                raise ConfigError(f"unknown section {section!r}; known: {', '.join(SECTIONS)}")
            if not isinstance(values, Mapping):
                raise ConfigError(f"section {section!r} must be a mapping of key: value")
            for key, value in values.items():
                if KEY_SECTIONS.get(key, section) != section:
                    raise ConfigError(f"parameter {key!r} belongs in section {KEY_SECTIONS[key]!r}, not {section!r}")
                if key not in KEY_SECTIONS:
                    known = ", ".join(item.name for item in dataclasses.fields(SECTION_CLASSES[section]))
                    raise ConfigError(f"unknown parameter {section}.{key}; known in {section}: {known}")
                flat[key] = value
        return cls.from_flat(flat)

    def to_flat(self) -> dict[str, Any]:
        """`{key: value}` with tuples as lists, ready for YAML, JSON and papermill."""
        return {key: _plain(value) for section in SECTIONS for key, value in dataclasses.asdict(
            getattr(self, section)).items()}

    def to_sections(self) -> dict[str, dict[str, Any]]:
        """The nested form, as written to each experiment's params.yaml."""
        return {section: {key: _plain(value) for key, value in dataclasses.asdict(getattr(self, section)).items()}
                for section in SECTIONS}

    def replace(self, **changes: Any) -> ExperimentConfig:
        """A copy with some flat keys changed (validated again)."""
        return ExperimentConfig.from_flat({**self.to_flat(), **changes})

    @property
    def experiment_id(self) -> str:
        """Ten hex digits of SHA-256 over the resolved parameters that can change the result (`LATER_KEYS` at
        their first value left out)."""
        flat = {key: value for key, value in self.to_flat().items()
                if key not in NON_RESULT_KEYS and LATER_KEYS.get(key, object()) != value}
        digest = hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest()
        return digest[:10]

    def save(self, path: str | Path) -> None:
        """Write this configuration as a params.yaml (sections form) beside an experiment's outputs."""
        Path(path).write_text(yaml.safe_dump(self.to_sections(), sort_keys=False))


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


@dataclass(frozen=True)
class TrackerConfig:
    """How a sweep is run and compared."""

    metric: str = "val_roc_auc"
    experiments_dir: str = "reports/experiments"

    def __post_init__(self) -> None:
        _check_choice("tracker.metric", self.metric, VALIDATION_METRICS)


@dataclass(frozen=True)
class Params:
    """A whole params.yaml: the base experiment, the sweep grid, and the tracker settings."""

    base: ExperimentConfig
    sweep: dict[str, list[Any]]
    tracker: TrackerConfig

    def experiments(self) -> list[ExperimentConfig]:
        """Every combination of the sweep values applied to the base (cartesian product), duplicates removed."""
        keys = list(self.sweep)
        seen: dict[str, ExperimentConfig] = {}
        for values in itertools.product(*(self.sweep[key] for key in keys)):
            experiment = self.base.replace(**dict(zip(keys, values)))
            seen.setdefault(experiment.experiment_id, experiment)
        return list(seen.values())


def parse_params(raw: Mapping[str, Any] | None, max_experiments: int = MAX_EXPERIMENTS) -> Params:
    """Validate a loaded params mapping and every experiment of its sweep.

    Args:
        raw: the loaded params.yaml.
        max_experiments: refuse a sweep with more combinations than this (counted before expanding it).

    Raises:
        ConfigError: one line naming the key, the value and what is allowed.
    """
    raw = dict(raw or {})
    unknown = set(raw) - {*SECTIONS, "sweep", "tracker"}
    if unknown:
        raise ConfigError(f"unknown section(s) {sorted(unknown)}; known: {', '.join((*SECTIONS, 'sweep', 'tracker'))}")
    base = ExperimentConfig.from_sections({section: raw.get(section) or {} for section in SECTIONS})
    tracker_raw = raw.get("tracker") or {}
    unknown_tracker = set(tracker_raw) - {item.name for item in dataclasses.fields(TrackerConfig)}
    if unknown_tracker:
        raise ConfigError(f"unknown parameter tracker.{sorted(unknown_tracker)[0]}; known: metric, experiments_dir")
    tracker = TrackerConfig(**tracker_raw)
    sweep = _parse_sweep(raw.get("sweep") or {})
    check_sweep_size(sweep, max_experiments)
    params = Params(base=base, sweep=sweep, tracker=tracker)
    params.experiments()  # validates every combination before any work starts
    return params


def _parse_sweep(sweep: Mapping[str, Any]) -> dict[str, list[Any]]:
    parsed: dict[str, list[Any]] = {}
    for key, values in sweep.items():
        section, _, name = key.rpartition(".") if "." in key and key.split(".", 1)[0] in SECTIONS else ("", "", key)
        if name not in KEY_SECTIONS:
            raise ConfigError(f"unknown sweep parameter {key!r}; known: {', '.join(sorted(KEY_SECTIONS))}")
        if section and KEY_SECTIONS[name] != section:
            raise ConfigError(f"sweep parameter {key!r}: {name} belongs in section {KEY_SECTIONS[name]!r}, "
                              f"not {section!r}")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep.{key} = {values!r} is not allowed; expected a non-empty list of values to try")
        parsed[name] = values
    return parsed


def check_sweep_size(sweep: Mapping[str, list[Any]], max_experiments: int = MAX_EXPERIMENTS) -> int:
    """The number of combinations of `sweep`, counted without expanding it.

    Raises:
        ConfigError: more than `max_experiments` combinations (a typo can make a grid of millions).
    """
    combinations = math.prod(len(values) for values in sweep.values())
    if combinations > max_experiments:
        raise ConfigError(f"the sweep has {combinations} combinations, more than max_experiments = "
                          f"{max_experiments}; raise the limit to run it")
    return combinations


def load_params(path: str | Path | None = None, max_experiments: int = MAX_EXPERIMENTS) -> Params:
    """Read and validate a params.yaml (default: the repository's).

    Args:
        path: the params file.
        max_experiments: refuse a sweep with more combinations than this.

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigError: unreadable, too large, not UTF-8 text, invalid YAML, an alias bomb or an invalid parameter,
            as one line.
    """
    from fakelib import paths

    path = Path(path) if path is not None else paths.PARAMS
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    raw = load_yaml(path, read_text(path))
    if raw is not None and not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return parse_params(raw, max_experiments)


def parse_overrides(items: Iterable[str], option: str = "--set") -> dict[str, Any]:
    """`KEY=VALUE` command-line overrides as {key: YAML value} (`--set epochs=20 --set conv_filters=[8,16]`).

    Raises:
        ConfigError: an item without "=" or with a value that is not YAML (one line).
    """
    overrides = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"{option} {item!r}: expected KEY=VALUE")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"{option} {item!r}: the value is not valid YAML") from None
    return overrides


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read an experiment's own params.yaml (sections form, no sweep)."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    return ExperimentConfig.from_sections(raw)
