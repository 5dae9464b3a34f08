"""The pretrained detector shipped in `fakelib/pretrained/`, its model card, the default model, and its rebuild.

The folder holds what any experiment folder holds for prediction (`model.keras`, `metrics.json`, `params.yaml`)
plus `MODEL_CARD.md`, written from those files (and from a per-group evaluation on held-out collections when
one is given), never typed by hand:

    python -m fakelib pretrained --data FACES_DEV [EXTRA_REAL ...] [--shift FACES_SHIFT] [--out DIR]
    python -m fakelib pretrained --from-run reports/bench/default [--shift FACES_SHIFT]

The first trains the base configuration of params.yaml on the given folders (`fakelib.train.run_experiment`)
and a trace expert on the first folder (`fakelib.expert`; `--no-expert` leaves it out), then combines them on
validation; the second packages a finished run (one made by `fakelib.expert.assemble` carries its expert).
`default_model()` is what predict, evaluate, explain and the explorer use when no model is given: the best model
of the last sweep, else this pretrained one.
"""

from __future__ import annotations

import json
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from fakelib import paths
from fakelib.expert import EYE_FILE  # a detector's eye-region member, when combination.json names it
from fakelib.residuals import N_FEATURES, RESIDUAL_FILE  # a detector's residual-statistics model, when combination.json names it

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
FILES = ("model.keras", "metrics.json", "params.yaml")
# A detector folder's optional trace expert (`fakelib.expert`), packaged when the run has it.
EXPERT_FILES = ("expert.keras", "combination.json")
# How every saved threshold is chosen (`metrics.choose_threshold`), in the card's words.
THRESHOLD_RULE = ("chosen on validation by Youden's J against the worst group of real photos (each source's reals "
                  "must be kept, not their average) and kept within [0.05, 0.95].")

# The packaged detector on web copies of its test split (`predict.evaluate_web_test`), beside the card.
WEB_TEST_FILE = "web_test.json"

# Largest model file the package may carry.
MAX_MODEL_BYTES = 10_000_000
# Data folders whose name says the model learnt from the synthetic demo faces.
DEMO_NAMES = ("demo",)
DEMO_MARKER = ".fakelib-demo.json"  # written by `fakelib demo` into every folder it creates


def default_model(best_dir: str | Path = paths.BEST, pretrained_dir: str | Path = PRETRAINED_DIR) -> Path:
    """The model used when none is given: the last sweep's best, else the pretrained one.

    Raises:
        FileNotFoundError: neither exists (one line that says how to get one).
    """
    for candidate in (Path(best_dir) / "model.keras", Path(pretrained_dir) / "model.keras"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("no model given and none found: pass a model path, run a sweep (make run), or "
                            "rebuild the pretrained model (python -m fakelib pretrained --data DIR)")


def is_demo_folder(folder: str | Path) -> bool:
    """True when a data folder is fakelib's synthetic demo: its marker file, its `masks/`, or its name says so."""
    folder = Path(str(folder))
    return (folder / DEMO_MARKER).is_file() or (folder / "masks").is_dir() or folder.name in DEMO_NAMES


def _platt(combined: dict) -> str:
    """The residual model's Platt scaling as the card says it (absent from detectors assembled before round 15)."""
    if combined.get("residual_platt_scale") is None:
        return ""
    return (f", then Platt-scaled on validation: scale {combined['residual_platt_scale']:.3f}, "
            f"bias {combined['residual_platt_bias']:.3f}")


def trained_on_demo(data_dir: str | list[str] | tuple[str, ...]) -> bool:
    """True when every data folder of an experiment is the synthetic demo dataset."""
    folders = [data_dir] if isinstance(data_dir, str) else list(data_dir)
    return bool(folders) and all(is_demo_folder(folder) for folder in folders)


def model_card_facts(model_path: str | Path) -> dict:
    """What the explorer and the report show beside a verdict: data, scores and threshold of a model's folder."""
    import yaml

    folder = Path(model_path).parent
    own, combined = _read_json(folder / "metrics.json"), _read_json(folder / "combination.json")
    metrics = {**own, **combined}  # a trace expert's combination has its own threshold and test figures
    params = yaml.safe_load((folder / "params.yaml").read_text()) if (folder / "params.yaml").is_file() else {}
    data_dir = (params.get("data") or {}).get("data_dir", "unknown")
    folders = [data_dir] if isinstance(data_dir, str) else list(data_dir)
    model = own.get("model") or (params.get("model") or {}).get("model")
    return {
        "model": (f"{model} + {combined.get('expert_model')} trace expert"
                  + (" + residual statistics" if combined.get("residual_file") else "")
                  + (" + eye-region model" if combined.get("eye_file") else "")) if combined else model,
        "data": [Path(str(folder)).name for folder in folders],
        "demo_data": bool(metrics.get("trained_on_demo", trained_on_demo(data_dir))),
        "threshold": metrics.get("threshold", 0.5),
        "small_threshold": combined.get("small_threshold"), "small_side": combined.get("expert_image_size"),
        "val_roc_auc": metrics.get("val_roc_auc"), "test_roc_auc": metrics.get("test_roc_auc"),
        "test_f1_at_threshold": metrics.get("test_f1_at_threshold"), "test_ece": metrics.get("test_ece"),
        "card": str(folder / "MODEL_CARD.md") if (folder / "MODEL_CARD.md").is_file() else None,
    }


def card_line(facts: dict) -> str:
    """One line about a model for a person: what it learnt from, how well it did, and its threshold."""
    scores = ", ".join(f"{name} {facts[key]:.3f}" for name, key in (
        ("test ROC-AUC", "test_roc_auc"), ("test F1", "test_f1_at_threshold"), ("calibration error", "test_ece"))
        if facts.get(key) is not None)
    small = f" ({facts['small_threshold']:.2f} for images under {facts['small_side']} px)" \
        if facts.get("small_threshold") is not None else ""
    line = f"Model {facts['model']} trained on {', '.join(facts['data'])}; {scores or 'no test scores'}; " \
           f"threshold {facts['threshold']:.2f}{small}."
    if facts["demo_data"]:
        line += " Warning: trained on the synthetic demo faces only, so its verdict on a real photo means little."
    return line


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _share(row: dict, key: str) -> str:
    """A group's share with its 95% interval when the row has one: "68.0% (48-83)"."""
    interval = row.get(f"{key}_ci95")
    share = _percent(row.get(key))
    return share if not interval else f"{share} ({100 * interval[0]:.0f}-{100 * interval[1]:.0f})"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _expert_training(combined: dict, folders: list) -> str:
    """What the card says the trace expert trained on (combinations before round 10 name no data: the first folder)."""
    names = combined.get("expert_data") or [Path(str(folders[0])).name]
    crop = combined.get("expert_train_crop") or 0
    return (f"trained on {', '.join(names)}" + (" alone" if len(names) == 1 else "")
            + (f", on random {crop} px windows of the images' own pixels" if crop else ""))


def _expert_input(combined: dict) -> str:
    side = combined["expert_image_size"]
    if combined.get("expert_view") == "native":
        return (f"it reads the centre window of each image's own pixels, at most {side} px, never resampled or "
                "padded")
    return f"it reads each image at {side} px (larger ones down-sampled with an area filter, smaller ones padded)"


def _architecture(robust: dict) -> str:
    """The card's words on the detector's network: one model, or a deep ensemble of draws (`train.members`)."""
    members = robust.get("members")
    if not members:
        return f"`{robust['model']}` ({robust['param_count']:,} parameters)"
    seeds = ", ".join(str(member["seed"]) for member in members)
    return (f"a deep ensemble of {len(members)} `{robust['model']}` draws (seeds {seeds}) whose logits are averaged, "
            f"then calibrated once ({robust['param_count']:,} parameters in all)")


def _epochs(robust: dict) -> str:
    members = robust.get("members")
    if not members:
        return f"{robust['epochs_run']} epochs, best validation epoch {robust['best_epoch']}"
    return "per draw " + ", ".join(f"{member['epochs_run']} epochs (best {member['best_epoch']})" for member in members)


def write_card(folder: Path, shift: dict | None = None) -> Path:
    """Write `folder/MODEL_CARD.md` from the folder's metrics.json and params.yaml (and a shift evaluation)."""
    import yaml

    metrics = _read_json(folder / "metrics.json")
    combined = _read_json(folder / "combination.json")
    params = yaml.safe_load((folder / "params.yaml").read_text())
    data_dir = params["data"]["data_dir"]
    folders = [data_dir] if isinstance(data_dir, str) else data_dir
    robust, robust_threshold = metrics, metrics["threshold"]
    residual = bool(combined.get("residual_file"))
    trace = "trace" if residual else "expert"  # with two experts, "expert_*" figures are the pooled ones
    residual_side = 256
    if residual and (folder / RESIDUAL_FILE).is_file():
        from fakelib.residuals import ResidualModel

        residual_side = ResidualModel.load(folder / RESIDUAL_FILE).side
    metrics = {**metrics, **combined}  # with a trace expert, the test figures and threshold are the combination's
    floor = metrics.get("test_ece_floor_mean")  # absent in runs from before the floor was measured
    lines = [
        "# Model card: fakelib pretrained detector", "",
        f"- Architecture: {_architecture(robust)}, fully convolutional; "
        f"inputs prepared at {params['data']['image_size']} px (larger photos down-sampled with an area filter, "
        "smaller ones padded with grey as in training, never up-sampled).",
        f"- Trained on: {', '.join(Path(str(item)).name for item in folders)} "
        f"({robust['n_train']} training, {robust['n_val']} validation images), "
        + (f"random {params['data']['train_crop']} px native-resolution crops"
           if params["data"].get("train_crop") else f"whole {params['data']['image_size']} px inputs")
        + ", photo degradations on both classes alike.",
        f"- Training: {_epochs(robust)}, "
        f"{robust['train_seconds']:.0f} s on 2 CPU cores"
        + (f" ({combined['train_seconds']:.0f} s with its expert{'s' if residual else ''})." if combined else "."),
        f"- Output `p_fake`: Platt-scaled on the validation images of the folders holding both classes "
        f"({robust.get('n_calibration', robust['n_val'])} images; scale {robust['calibration_scale']:.3f}, "
        f"bias {robust['calibration_bias']:.3f}).",
        f"- Threshold: {metrics['threshold']:.3f}, {THRESHOLD_RULE}"
        if not combined else
        f"- Trace expert (`fakelib.expert`): `{combined.get('expert_model')}` "
        f"({combined.get('expert_param_count') or 0:,} parameters), {_expert_training(combined, folders)} in "
        + (f"{combined['expert_epochs']} epochs, " if combined.get("expert_epochs") else "")
        + f"{combined.get('expert_train_seconds') or 0:.0f} s; {_expert_input(combined)}. It can "
        f"only add evidence: the combined logit is the detector's plus {combined['weight']:g} x the expert's log-odds "
        f"above {combined['cutoff']:g}, Platt-scaled again on validation (scale {combined['scale']:.3f}, bias "
        f"{combined['bias']:.3f}). On validation it adds evidence to "
        f"{_percent(combined.get(f'{trace}_fires_val_fakes'))} of the fakes, "
        f"{_percent(combined.get(f'{trace}_fires_val_reals'))} of the reals of its own source and "
        f"{_percent(combined.get(f'{trace}_fires_val_other_reals'))} of the reals from the other folders"
        + (", which it never trained on.\n" if len(combined.get("expert_data") or folders[:1]) == 1 else ".\n")
        + (f"- Residual statistics (`fakelib.residuals`): {N_FEATURES:,} histogram counts of each image's high-pass "
           f"residuals at its own pixels (the centre square, down-sampled to {residual_side} px when larger, never "
           f"up-sampled or padded), read by logistic regression (C {combined.get('residual_c')}, chosen on "
           f"validation{_platt(combined)}), trained on {combined.get('residual_n_train')} training images of every folder in "
           f"{combined.get('residual_train_seconds') or 0:.0f} s. It too can only add evidence: both experts' "
           "log-odds above the cutoff are summed before the weight. On validation it adds evidence to "
           f"{_percent(combined.get('residual_fires_val_fakes'))} of the fakes, "
           f"{_percent(combined.get('residual_fires_val_reals'))} of the reals of the paired source and "
           f"{_percent(combined.get('residual_fires_val_other_reals'))} of the reals from the other folders.\n"
           if residual else "")
        + (f"- Eye-region model (`fakelib.eyes`): a `cnn` ({combined.get('eye_param_count') or 0:,} parameters) of "
           f"each face's eye square at its native pixels (FaceMesh landmarks), trained in "
           f"{combined.get('eye_epochs')} epochs, {combined.get('eye_train_seconds') or 0:.0f} s, and Platt-scaled "
           f"on validation (scale {combined.get('eye_platt_scale', 1.0):.3f}, bias "
           f"{combined.get('eye_platt_bias', 0.0):.3f}). It too can only add evidence, pooled with the others; a "
           f"face without landmarks gets none (eyes found in {_percent(combined.get('eye_found_val'))} of the "
           f"validation images). On validation it adds evidence to {_percent(combined.get('eye_fires_val_fakes'))} "
           f"of the fakes, {_percent(combined.get('eye_fires_val_reals'))} of the reals of the paired source and "
           f"{_percent(combined.get('eye_fires_val_other_reals'))} of the reals from the other folders.\n"
           if combined.get("eye_file") else "")
        + f"- Threshold: {metrics['threshold']:.3f}, {THRESHOLD_RULE} It is the combined detector's own "
        f"(the detector's alone is {robust_threshold:.3f})." + _small_regime_line(combined),
        "", "## Held-out test split of the training source", "",
        "| ROC-AUC | F1 at threshold | accuracy at threshold | reals kept | fakes caught | ECE | Brier |",
        "|---|---|---|---|---|---|---|",
        f"| {_number(metrics['test_roc_auc'])} | {_number(metrics['test_f1_at_threshold'])} | "
        f"{_number(metrics['test_accuracy_at_threshold'])} | {_percent(metrics['test_real_rate_at_threshold'])} | "
        f"{_percent(metrics['test_fake_rate_at_threshold'])} | {_number(metrics.get('test_ece'))}"
        + (f" (floor {_number(floor)})" if floor else "") + " | "
        f"{_number(metrics.get('test_brier'))} |",
    ]
    if floor:
        lines += ["", "The floor is the ECE a perfectly calibrated model would still show on this many faces "
                  "(labels drawn from its own probabilities): a measured ECE near it is sampling noise."]
    lines += _source_table(metrics)
    if shift:
        lines += ["", "## Collections it never saw (evaluation only)", "",
                  f"At the saved thresholds, `{Path(shift['data']).name}`: a real group's figure is the share kept as "
                  "real, a fake group's the share caught (95% interval in brackets, where measured); ROC-AUC of a "
                  "fake group is against all the set's reals, and against the reals judged in its own regime "
                  "(small images are calibrated apart, so all reals mix two calibrations), "
                  f"also after one common re-encode ({shift['common_format']['side']} px, JPEG "
                  f"{shift['common_format']['jpeg_quality']}).", "",
                  "| group | n | as published | common format | ROC-AUC vs reals | vs reals of its regime | "
                  "same, common format |", "|---|---|---|---|---|---|---|"]
        for group, row in shift["groups"].items():
            kind = "caught" if row["label"] == "fake" else "kept_real"
            lines.append(f"| {group} | {row['n']} | {_share(row, f'as_published_{kind}')} | "
                         f"{_share(row, f'common_format_{kind}')} | "
                         f"{_number(row.get('as_published_roc_auc_vs_all_reals'))} | "
                         f"{_number(row.get('as_published_roc_auc_vs_reals_same_regime'))} | "
                         f"{_number(row.get('common_format_roc_auc_vs_all_reals'))} |")
    web = _read_json(folder / WEB_TEST_FILE) if (folder / WEB_TEST_FILE).is_file() else None
    if web:
        lines += ["", "## Its own test faces after a website's processing", "",
                  f"The test split again, each face's centre square shrunk to {web['web_sides'][0]}-"
                  f"{web['web_sides'][1]} px and re-encoded as JPEG at quality {web['web_quality'][0]}-"
                  f"{web['web_quality'][1]} (drawn per file, `fakelib.predict.web_copy`): the generator's trace is "
                  "gone, as from many faces found online. At the saved thresholds:", "",
                  "| view | n | ROC-AUC | F1 | reals kept | fakes caught | ECE |", "|---|---|---|---|---|---|---|"]
        for view, name in (("as_files", "as the files are"), ("web", "web copies")):
            row = web[view]
            lines.append(f"| {name} | {row['n']} | {_number(row['roc_auc'])} | {_number(row['f1'])} | "
                         f"{_percent(row['real_rate'])} | {_percent(row['fake_rate'])} | {_number(row['ece'])} |")
    lines += ["", "## Known failures", "", *_measured_failures(metrics, shift, web),
              *([f"- Its experts add evidence to {_percent(combined['expert_fires_val_other_reals'])} of the "
                 "validation reals from the other folders; real photos from other sources are called fake "
                 "more often because of it."]
                if (combined.get("expert_fires_val_other_reals") or 0.0) > 0.05 else []),
              *(["- Its residual statistics learnt the training collection's processing more than a generator's: "
                 "alone they rank generated faces from other sources below real photos (docs/results.md, round 14). "
                 "They can only add evidence, but a real photo whose pixel noise resembles the training fakes' is "
                 "pushed toward fake."] if residual else []),
              "- Generators unlike StyleGAN (diffusion models above all) were never seen in training; expect them "
              "to pass as real.",
              "- Heavily compressed small faces (128 px, JPEG quality 75 and below) lose most of the traces it reads.",
              "- A face that is not centred, or a photo of a whole scene, is cropped to its centre square first.",
              "", "## Licence", "",
              "The training images are FFHQ (CC BY-NC-SA 4.0), StyleGAN faces (CC BY-NC 4.0) and other real-photo "
              "collections for non-commercial research. These weights are derived from them: use them for "
              "non-commercial research only.", "",
              "Rebuild or retrain on your own data: `python -m fakelib pretrained --data YOUR_FOLDER [MORE ...]"
              + (" --eye" if combined.get("eye_file") else "") + _set_options(params) + "`.", ""]
    path = folder / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path


def _source_table(metrics: dict) -> list[str]:
    """The card's per-source table (`metrics.source_rows`; none for runs from before it was recorded): what each
    folder's reals and fakes meet at the saved thresholds."""
    from fakelib.metrics import source_rows

    rows = source_rows(metrics)
    if not rows:
        return []
    lines = ["", "## Each source of its own data", "",
             "At the saved thresholds, per folder and class (and sub-folder, where a class has them): a real "
             "group's figure is the share kept as real, a fake group's the share caught (95% interval). "
             "Validation chose the thresholds, so its figures are in-sample; a source without test images has "
             "none.", "", "| group | class | validation n | validation | test n | test |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['group']} | {row['class']} | {row['validation_n']} | {_share(row, 'validation')} | "
                     f"{row['test_n']} | {_share(row, 'test')} |")
    return lines


def _set_options(params: dict) -> str:
    """` --set KEY=VALUE` for each of the detector's settings that differs from the repository's params.yaml base
    (training folders and thread count aside), so the card's rebuild line trains the same recipe."""
    from fakelib.config import NON_RESULT_KEYS, ExperimentConfig, load_params

    packaged, base = ExperimentConfig.from_sections(params).to_flat(), load_params().base.to_flat()
    changed = [key for key, value in packaged.items()
               if key != "data_dir" and key not in NON_RESULT_KEYS and value != base[key]]
    return "".join(f" --set {shlex.quote(key + '=' + _yaml_value(packaged[key]))}" for key in changed)


def _yaml_value(value: object) -> str:
    """`value` as `config.parse_overrides` reads it back: JSON (valid YAML), a string bare when YAML keeps it one."""
    import yaml

    if isinstance(value, str) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value)


def _small_regime_line(combined: dict) -> str:
    """The card's words on a small-image regime (`expert.Combination`), or "" without one."""
    if combined.get("small_threshold") is None:
        return ""
    copies, sides = combined.get("small_n_val_web_copies") or 0, combined.get("small_copy_sides") or ["?", "?"]
    return (f"\n- Images under {combined['expert_image_size']} px (their centre square) are judged apart: no "
            "generator's trace survives the shrink that made them small, so the experts' silence says nothing "
            f"there. They are calibrated on their own (scale {combined['small_scale']:.3f}, bias "
            f"{combined['small_bias']:.3f}, fitted on a web copy of each of {copies} validation images of the paired "
            f"source, shrunk to {sides[0]}-{sides[1]} px and re-encoded) and judged at "
            f"{combined['small_threshold']:.3f}, chosen by the same rule on those copies and on validation's "
            f"{(combined.get('small_n_val') or copies) - copies} own small images. There, on validation: ROC-AUC "
            f"{_number(combined.get('small_val_roc_auc'))}, reals kept {_percent(combined.get('small_val_real_rate'))}"
            f", fakes caught {_percent(combined.get('small_val_fake_rate'))}, ECE "
            f"{_number(combined.get('small_val_ece'))}.")


def _measured_failures(metrics: dict, shift: dict | None, web: dict | None = None) -> list[str]:
    """Card bullets from the measured numbers: the test split's weaker class, its web copies where they lose fakes,
    and every held-out group below 80%."""
    lines = [f"- On its own test split it keeps {_percent(metrics['test_real_rate_at_threshold'])} of reals as real "
             f"and catches {_percent(metrics['test_fake_rate_at_threshold'])} of fakes at the threshold."]
    caught = (web or {}).get("web", {}).get("fake_rate")
    if caught is not None and caught < 0.8:
        lines.append(f"- On web copies of the same test faces it catches only {_percent(caught)} of fakes (and keeps "
                     f"{_percent(web['web']['real_rate'])} of reals): much of its evidence is the generator's trace, "
                     "which a website's shrink and re-encode removes.")
    for group, row in (shift or {}).get("groups", {}).items():
        kind, verb = ("caught", "catches") if row["label"] == "fake" else ("kept_real", "keeps as real")
        share = row.get(f"as_published_{kind}")
        if share is not None and share < 0.8:
            lines.append(f"- It {verb} only {_percent(share)} of `{group}` ({row['n']} faces) at the threshold, "
                         f"though it ranks them at ROC-AUC {_number(row.get('as_published_roc_auc_vs_all_reals'))} "
                         "against all reals" + _same_regime(row)
                         + ": its probabilities run low on sources it never saw."
                         if row["label"] == "fake" else
                         f"- It {verb} only {_percent(share)} of `{group}` ({row['n']} faces).")
    return lines


def _same_regime(row: dict) -> str:
    """", {AUC} against the reals judged in its regime" where a shift group has that figure (from round 18 on)."""
    auc = row.get("as_published_roc_auc_vs_reals_same_regime")
    return "" if auc is None else f" ({_number(auc)} against the reals judged in its regime)"


def package(run_dir: str | Path, out_dir: str | Path = PRETRAINED_DIR, shift_dir: str | Path | None = None) -> dict:
    """Copy a finished run's model, metrics and params into `out_dir` and write its card; returns the card facts.

    Raises:
        FileNotFoundError: the run is missing one of `FILES` (it did not finish).
        ValueError: the model file is larger than `MAX_MODEL_BYTES`.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    missing = [name for name in FILES if not (run_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{run_dir} is not a finished run: missing {', '.join(missing)}")
    names = FILES + (EXPERT_FILES if (run_dir / "combination.json").is_file() else ())
    combined = json.loads((run_dir / "combination.json").read_text()) if "combination.json" in names else {}
    names += tuple(str(combined[key]) for key in ("residual_file", "eye_file") if combined.get(key))
    missing = [name for name in names if not (run_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{run_dir} has combination.json but no {', '.join(missing)}")
    size = sum((run_dir / name).stat().st_size for name in names if name.endswith((".keras", ".npz")))
    if size > MAX_MODEL_BYTES:
        raise ValueError(f"the model files are {size} bytes; the package carries at most {MAX_MODEL_BYTES}")
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".pretrained-", dir=out_dir))
    try:
        for name in names:
            shutil.copy2(run_dir / name, staging / name)
        if "combination.json" not in names:  # an expert left from an earlier package would join this model
            for name in EXPERT_FILES:
                (out_dir / name).unlink(missing_ok=True)
        for member in (RESIDUAL_FILE, EYE_FILE):  # a member left from an earlier package would join this model
            if member not in names:
                (out_dir / member).unlink(missing_ok=True)
        _anonymize_data_dirs(staging / "params.yaml")
        shift = None
        if shift_dir:
            from fakelib.predict import Predictor, evaluate_groups

            shift = evaluate_groups(Predictor.from_path(staging / "model.keras"), shift_dir)
            shift["data"] = Path(shift["data"]).name  # the folder's name, not a path of this machine
            (staging / "shift.json").write_text(json.dumps(shift, indent=2))
        else:  # a shift.json left from an earlier package would describe another model
            (out_dir / "shift.json").unlink(missing_ok=True)
        web = _web_test(run_dir, staging / "model.keras")
        if web:
            (staging / WEB_TEST_FILE).write_text(json.dumps(web, indent=2))
        else:  # a web test left from an earlier package would describe another model
            (out_dir / WEB_TEST_FILE).unlink(missing_ok=True)
        write_card(staging, shift)
        for path in staging.iterdir():  # each file replaced atomically; a reader never sees half a model
            path.replace(out_dir / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model_card_facts(out_dir / "model.keras")


def _web_test(run_dir: Path, model_path: Path) -> dict | None:
    """`predict.evaluate_web_test` of the packaged detector on its first training folder's test split, if that
    folder is on this machine and its manifest has one; its path reduced to the folder's name."""
    import yaml

    from fakelib import paths
    from fakelib.predict import Predictor, evaluate_web_test

    data_dir = yaml.safe_load((run_dir / "params.yaml").read_text())["data"]["data_dir"]
    folder = paths.resolve(data_dir if isinstance(data_dir, str) else data_dir[0], paths.ROOT)
    if not folder.is_dir():
        return None
    web = evaluate_web_test(Predictor.from_path(model_path), folder)
    return None if "error" in web else {**web, "data": folder.name}


def _anonymize_data_dirs(params_path: Path) -> None:
    """Keep only the folder names of `data_dir` in a packaged params.yaml: absolute paths of the machine that
    trained the model mean nothing elsewhere."""
    import yaml

    params = yaml.safe_load(params_path.read_text())
    data_dir = params["data"]["data_dir"]
    names = [Path(str(folder)).name for folder in ([data_dir] if isinstance(data_dir, str) else data_dir)]
    params["data"]["data_dir"] = names[0] if len(names) == 1 else names
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))


def build_pretrained(out_dir: str | Path, data: Sequence[str | Path] = (), from_run: str | Path | None = None,
                     shift: str | Path | None = None, params_path: str | Path | None = None,
                     expert: bool = True, expert_overrides: dict | None = None, eye: bool = False,
                     eye_overrides: dict | None = None, overrides: dict | None = None) -> dict:
    """Train the base configuration of params.yaml on `data` (and, with `expert`, the trace expert of
    `fakelib.expert` on the first folder, combined on validation; `expert_overrides` changes its settings; with
    `eye` too, an eye-region member, `fakelib.eyes.eye_config`, on the eye squares of every folder), or take the
    finished run `from_run`, and package it into `out_dir`; the packaged facts. `overrides` change the detector's
    settings (`{"members": 2}`: a deep ensemble of two draws).

    Raises:
        ValueError: neither `data` nor `from_run` given.
    """
    run_dir = Path(from_run) if from_run else None
    if run_dir is None:
        if not data:
            raise ValueError("give data folders to train on, or from_run, a finished experiment folder to package")
        from fakelib.config import load_params
        from fakelib.train import configure_threads, run_experiment

        folders = [str(Path(folder).resolve()) for folder in data]
        config = load_params(params_path).base.replace(**(overrides or {}),
                                                       data_dir=folders[0] if len(folders) == 1 else folders)
        configure_threads(config.train.threads)
        run_dir = Path(tempfile.mkdtemp(prefix="fakelib-pretrained-"))
        run_experiment(config, run_dir / "robust", verbose=2)
        if expert:
            from fakelib.expert import assemble, expert_config

            run_experiment(expert_config(config).replace(**(expert_overrides or {})), run_dir / "expert", verbose=2)
            eye_dir = None
            if eye:
                from fakelib.eyes import crop_folder, eye_config

                eye_folders = [run_dir / "eyes" / f"{index}-{Path(folder).name}" for index, folder in enumerate(folders)]
                for folder, eye_folder in zip(folders, eye_folders):
                    crop_folder(folder, eye_folder)
                eye_dir = run_dir / "eye"
                run_experiment(eye_config(config, eye_folders, eye_overrides), eye_dir, verbose=2)
            assemble(run_dir / "robust", run_dir / "expert", run_dir / "combined", eye_dir=eye_dir)
        run_dir = run_dir / ("combined" if expert else "robust")
    return package(run_dir, Path(out_dir), shift)
