"""Real-data benchmark: train the default configuration and the spectrum baseline, test on held-out faces,
then score both on faces from sources they never saw.

    python benchmarks/bench_detect.py --data FACES_DEV [EXTRA_REAL ...] --shift FACES_SHIFT --out DIR

The first `--data` folder is laid out like faces-dev: `real/`, `fake/` and a `manifest.csv` whose `split` column
decides train / val / test; further folders (extra real photos, say) join training and validation. Both models
go through `fakelib.train.run_experiment` (same pipeline, same artifacts), are saved as `OUT/<name>/model.keras`,
and are scored on `test` at 0.5 and at the threshold chosen on `val`. The default configuration is the base
section of params.yaml with `data_dir` replaced by `--data`.

`--shift DIR` (evaluation only: nothing is trained, tuned or stopped on it) scores every model on each group
`real/<group>/`, `fake/<group>/` of DIR at the saved threshold: a real group's share kept as real, a fake group's
share caught, each fake group's ROC-AUC against all of DIR's reals and against the reals judged in its own
regime (a detector with a small-image regime calibrates small and large images apart), and the same after one
common resize and re-encode of every file (`fakelib.predict.common_format`), which checks that the score is not
read from file properties.

Every model (the eye model aside) is also scored on the first folder's validation and test splits as the files
are and as web copies (`fakelib.predict.web_copy`: the centre square shrunk to 112-200 px, JPEG at quality 70-95,
drawn per file), under `web_val` and `web_test`: the training source's own faces without their generator's trace,
a check that needs no outside collection (choose on `web_val`; `web_test` stays held out; the combined detector's
small-image regime is fitted on the `web_val` copies, so for it only `web_test` is held out).

`--models default,expert` also trains the trace expert of `fakelib.expert` (NPR at native 256 px on the first
folder only; `--expert-set KEY=VALUE` overrides its settings) and joins the two into one detector
(`fakelib.expert.assemble`, fitted on validation) in `OUT/combined/`, with the residual-statistics expert of
`fakelib.residuals` fitted there on every data folder, reported as model `combined` with its own test and shift
figures; its training seconds are all three members' together. The goals are then checked on it.

Prints one JSON object on stdout (training progress goes to stderr): per model every test and validation
metric, calibration (ECE, Brier) and convergence figures, training seconds and parameter count; the dataset
sizes; the per-group shift figures; and the comparison against the baseline and the goals below.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

# The spectrum baseline is Durall et al.'s logistic regression: no conv layers, so it takes a larger constant
# learning rate, and no augmentation besides flips (blur, scaling, sharpening, noise and JPEG re-encoding erase or
# forge the spectra it reads).
SPECTRUM_OVERRIDES: dict[str, Any] = {
    "model": "spectrum", "learning_rate": 0.01, "lr_schedule": "constant", "crop": 0.0, "color_jitter": 0.0,
    "blur_prob": 0.0, "jpeg_prob": 0.0, "double_jpeg_prob": 0.0, "rescale_prob": 0.0, "sharpen_prob": 0.0,
    "noise_prob": 0.0, "train_crop": 0}
GOAL = {"test_roc_auc": 0.96, "test_f1": 0.90, "train_seconds": 1800.0, "test_ece": 0.05, "val_loss_max_jump": 3.0,
        "shift_real_kept": 0.90, "shift_stylegan_caught": 0.80}
# Large or per-run entries of metrics.json that the benchmark line leaves out.
SKIPPED_KEYS = ("experiment_id",)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, nargs="+",
                        help="dataset folder with real/, fake/ and manifest.csv, then any extra training folders")
    parser.add_argument("--shift", default=None, help="evaluation-only folder of real/<group>/ and fake/<group>/")
    parser.add_argument("--out", required=True, help="output folder; each model in OUT/<name>/")
    parser.add_argument("--params", default=None, help="params.yaml whose base section is the default (default: repo's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one parameter of both models (YAML value), may repeat")
    parser.add_argument("--models", default="default,spectrum",
                        help="comma-separated subset of default,spectrum,expert,eye (eye: a model of the eye squares "
                             "of every --data folder, cut into OUT/eyes/, joining the combined detector; needs expert)")
    parser.add_argument("--eye-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one parameter of the eye-region model only (YAML value), may repeat")
    parser.add_argument("--expert-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one parameter of the trace expert only (YAML value), may repeat")
    parser.add_argument("--cache", default=None, help="prepared-data cache folder (default: data/cache)")
    parser.add_argument("--reuse", action="store_true",
                        help="take a finished OUT/<name>/ run whose params.yaml equals the configuration instead of "
                             "training it again (its measured figures, training seconds included, are reported)")
    return parser.parse_args(argv)


def configurations(args: argparse.Namespace) -> dict[str, Any]:
    """`{name: ExperimentConfig}` for the requested models, from params.yaml's base, --data and --set."""
    from fakelib.config import load_params
    from fakelib.config import parse_overrides as parsed
    from fakelib.expert import expert_config
    from fakelib.eyes import eye_config

    folders = [str(Path(folder).resolve()) for folder in args.data]
    overrides = {"data_dir": folders[0] if len(folders) == 1 else folders, **parsed(args.set, "--set")}
    base = load_params(args.params).base.replace(**overrides)
    available = {"default": base, "spectrum": base.replace(**{**SPECTRUM_OVERRIDES, **overrides}),
                 "expert": expert_config(base).replace(**parsed(args.expert_set, "--expert-set")),
                 "eye": eye_config(base, eye_folders(args), parsed(args.eye_set, "--eye-set"))}
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in names if name not in available]
    if unknown or not names:
        raise ValueError(f"--models {args.models!r}: expected a comma-separated subset of {', '.join(available)}")
    if "eye" in names and not {"default", "expert"} <= set(names):
        raise ValueError(f"--models {args.models!r}: the eye-region model joins the default and its trace expert; "
                         "add default,expert")
    return {name: available[name] for name in names}


def eye_folders(args: argparse.Namespace) -> list[Path]:
    """Where the eye squares of each --data folder go: OUT/eyes/<index>-<folder name>."""
    return [Path(args.out) / "eyes" / f"{index}-{Path(folder).name}" for index, folder in enumerate(args.data)]


def cut_eyes(args: argparse.Namespace) -> dict[str, Any]:
    """The eye squares of every --data folder (`fakelib.eyes.crop_folder`); a folder already cut is kept with
    --reuse. Returns the seconds taken and the files left out (no face found, unreadable) per folder."""
    from fakelib.eyes import REPORT_FILE, crop_folder

    started, skipped = time.perf_counter(), {}
    for folder, target in zip(args.data, eye_folders(args)):
        if args.reuse and (target / REPORT_FILE).is_file():
            report = json.loads((target / REPORT_FILE).read_text())
        else:
            report = crop_folder(folder, target)
        skipped[Path(folder).name] = report["n_skipped"]
    return {"eye_crop_seconds": round(time.perf_counter() - started, 2), "eye_skipped": skipped}


def finished_run(config, output_dir: Path) -> dict[str, Any] | None:
    """metrics.json of a finished run in `output_dir` trained with exactly `config` (threads aside), else None."""
    from fakelib.config import NON_RESULT_KEYS, load_experiment

    if not (output_dir / "metrics.json").is_file() or not (output_dir / "params.yaml").is_file():
        return None
    saved = {key: value for key, value in load_experiment(output_dir / "params.yaml").to_flat().items()
             if key not in NON_RESULT_KEYS}
    wanted = {key: value for key, value in config.to_flat().items() if key not in NON_RESULT_KEYS}
    return json.loads((output_dir / "metrics.json").read_text()) if saved == wanted else None


def train_one(config, output_dir: Path, cache: str | None, shift: str | None = None,
              reuse: bool = False) -> dict[str, Any]:
    """Train and evaluate one configuration; a failure becomes a result with status `error`, not a crash."""
    from fakelib.train import run_experiment

    started = time.perf_counter()
    metrics = finished_run(config, output_dir) if reuse else None
    try:
        if metrics is None:
            with contextlib.redirect_stdout(sys.stderr):  # Keras progress must not mix with the JSON line
                metrics = run_experiment(config, output_dir, verbose=2, cache_root=cache)
    except Exception as error:  # one failed model must not hide the other's figures
        return {"status": "error", "message": f"{type(error).__name__}: {error}", "model": config.model.model}
    result = {"status": "ok", **{key: value for key, value in metrics.items() if key not in SKIPPED_KEYS}}
    result["wall_seconds"] = round(time.perf_counter() - started, 2)
    result["model_path"] = str(output_dir / "model.keras")
    result["config"] = config.to_flat()
    if shift:
        from fakelib.predict import Predictor, evaluate_groups

        result["shift"] = evaluate_groups(Predictor.from_path(output_dir / "model.keras"), shift)
    return result


def dataset_sizes(output_dir: Path) -> dict[str, Any]:
    """Images per split and class, and where the split came from, from a finished run's data_report.json."""
    report = json.loads((output_dir / "data_report.json").read_text())
    return {"split_source": report["split_source"], "per_split": report["per_split"],
            "n_images": report["n_images"], "n_skipped": report["n_skipped"]}


def combined_result(out: Path, cache: str | None, shift: str | None, eye: bool = False) -> dict[str, Any]:
    """The default and the trace expert (and with `eye` the eye-region model) joined into one detector in
    `out/combined` (`fakelib.expert.assemble`): its test figures, the members' training seconds together, and its
    shift groups."""
    from fakelib.expert import assemble

    started = time.perf_counter()
    try:
        combined = assemble(out / "default", out / "expert", out / "combined", cache_root=cache,
                            eye_dir=out / "eye" if eye else None)
    except Exception as error:  # the members' own figures stay in the result
        return {"status": "error", "message": f"{type(error).__name__}: {error}", "model": "combined"}
    members = [json.loads((out / name / "metrics.json").read_text()) for name in ("default", "expert")]
    jumps = [member.get("val_loss_max_jump") for member in members if member.get("val_loss_max_jump") is not None]
    experts = f"{combined['expert_model']} trace expert" + (" + residual statistics" if combined.get("residual_file")
                                                             else "") + (
        " + eye-region model" if combined.get("eye_file") else "")
    result = {"status": "ok", "model": f"{members[0]['model']} + {experts}", **combined,
              "val_loss_max_jump": max(jumps) if jumps else None,
              "model_path": str(out / "combined" / "model.keras"),
              "wall_seconds": round(time.perf_counter() - started, 2)}
    if shift:
        from fakelib.predict import Predictor, evaluate_groups

        result["shift"] = evaluate_groups(Predictor.from_path(out / "combined" / "model.keras"), shift)
    return result


def add_web_tests(results: dict[str, dict[str, Any]], data_dir: str) -> None:
    """Each finished whole-face model's figures on the first data folder's validation and test splits as the files
    are and as web copies (`fakelib.predict.evaluate_web_test`), under `web_val` and `web_test`: a generator's
    trace is gone from the copies, so this measures on the training source itself how much a detector relies on
    it. Choose on `web_val`; `web_test` stays held out (the combined detector's small-image regime is fitted on the
    `web_val` copies: for it, `web_val` is in-sample)."""
    from fakelib.predict import Predictor, evaluate_web_test

    for name, result in results.items():
        if name != "eye" and result.get("status") == "ok":
            predictor = Predictor.from_path(result["model_path"])
            for split in ("val", "test"):
                result[f"web_{split}"] = evaluate_web_test(predictor, data_dir, split)


def comparison(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The default (the combined detector when there is one) against the spectrum baseline and the goal."""
    default, spectrum = results.get("default", {}), results.get("spectrum", {})
    if results.get("combined", {}).get("status") == "ok":
        default = {**default, **results["combined"]}
    if default.get("status") != "ok":
        return {}
    goal = {
        "test_roc_auc": _at_least(default.get("test_roc_auc"), GOAL["test_roc_auc"]),
        "test_f1": _at_least(default.get("test_f1_at_threshold"), GOAL["test_f1"]),
        "train_seconds": default["train_seconds"] <= GOAL["train_seconds"],
        "test_ece": _at_least(-(default.get("test_ece") or 1.0), -GOAL["test_ece"]),
        "val_loss_max_jump": _at_least(-(default.get("val_loss_max_jump") or 0.0), -GOAL["val_loss_max_jump"]),
    }
    if "shift" in default:
        goal.update(shift_goals(default["shift"]))
    compared: dict[str, Any] = {"goal": GOAL, "goal_met": {**goal, "all": all(goal.values())}}
    if spectrum.get("status") == "ok":
        for key in ("test_roc_auc", "test_average_precision", "test_f1", "test_f1_at_threshold"):
            if default[key] is not None and spectrum[key] is not None:
                compared[f"{key}_minus_spectrum"] = round(default[key] - spectrum[key], 4)
        compared["train_seconds_ratio_to_spectrum"] = round(default["train_seconds"] / max(spectrum["train_seconds"],
                                                                                             1e-9), 2)
        ahead = default["test_roc_auc"] > spectrum["test_roc_auc"]
        compared["goal_met"] = {**compared["goal_met"], "ahead_of_spectrum": ahead, "all": all(goal.values()) and ahead}
    return compared


def _at_least(value: float | None, bound: float) -> bool:
    return value is not None and value >= bound


def shift_goals(shift: dict[str, Any]) -> dict[str, bool]:
    """Every real group kept as real >= 0.90; every StyleGAN2/3 group caught >= 0.80 (as published)."""
    groups = shift["groups"]
    reals = [row["as_published_kept_real"] for row in groups.values() if row["label"] == "real"]
    stylegans = [row["as_published_caught"] for name, row in groups.items()
                 if row["label"] == "fake" and "stylegan" in name]
    return {"shift_real_kept": bool(reals) and all(_at_least(value, GOAL["shift_real_kept"]) for value in reals),
            "shift_stylegan_caught": bool(stylegans) and all(_at_least(value, GOAL["shift_stylegan_caught"])
                                                              for value in stylegans)}


def main(argv: list[str] | None = None) -> int:
    from fakelib.quiet import tensorflow_environment

    tensorflow_environment()  # before TensorFlow loads: oneDNN on where TensorFlow leaves it off
    args = parse_args(argv)
    from fakelib.train import configure_threads

    configs = configurations(args)
    configure_threads(next(iter(configs.values())).train.threads)
    out = Path(args.out)
    eyes = cut_eyes(args) if "eye" in configs else None
    # the eye model reads eye squares, not whole faces: faces-shift is scored through the combined detector only
    results = {name: train_one(config, out / name, args.cache, None if name == "eye" else args.shift, args.reuse)
               for name, config in configs.items()}
    if eyes is not None:
        results["eye"].update(eyes)
    if all(results.get(name, {}).get("status") == "ok" for name in ("default", "expert")):
        eye = results.get("eye", {}).get("status") == "ok"
        results["combined"] = combined_result(out, args.cache, args.shift, eye)
    finished = [name for name, result in results.items() if result["status"] == "ok"]
    add_web_tests(results, args.data[0])
    summary = {
        "data_dir": [str(Path(folder).resolve()) for folder in args.data],
        "shift_dir": str(Path(args.shift).resolve()) if args.shift else None,
        "dataset": dataset_sizes(out / finished[0]) if finished else None,
        "spectrum_overrides": SPECTRUM_OVERRIDES,
        "models": results,
        "comparison": comparison(results),
    }
    print(json.dumps(summary, default=str))
    return 0 if len(finished) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
