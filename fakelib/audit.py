"""Dataset bias audit: metadata per class and a metadata-only classifier.

A detector can score 99% by learning the file format instead of the face (FFHQ is PNG while
thispersondoesnotexist serves JPEG; sizes and JPEG qualities often differ by source as well). The audit reads
only what a file says about itself - format, JPEG quality estimated from its quantization tables, chroma
subsampling, pixel size, file size, colour mode, EXIF/ICC presence, whether it is grayscale - and trains a small
classifier on those features alone. A cross-validated ROC-AUC above `WARNING_AUC` means the classes can be told
apart without looking at the faces, and the single most separating feature is named.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, JpegImagePlugin

from fakelib import paths

WARNING_AUC = 0.7
CV_FOLDS = 5
# IJG (libjpeg) base quantization tables, ITU-T T.81 Annex K, natural (row-major) order as Pillow reports them.
STANDARD_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])
STANDARD_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32)
SUBSAMPLING_NAMES = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}
# Feature name -> what it means, in the order the report lists them. Every value is numeric; -1 = not applicable.
FEATURES = {
    "format": "file format (JPEG, PNG, WEBP, ...)",
    "jpeg_quality": "JPEG quality estimated from the quantization tables (-1: not JPEG)",
    "ijg_tables": "JPEG tables are exactly the standard IJG tables scaled (-1: not JPEG)",
    "subsampling": "JPEG chroma subsampling (-1: not JPEG)",
    "progressive": "progressive JPEG",
    "width": "width in pixels",
    "height": "height in pixels",
    "file_bytes": "file size in bytes",
    "bytes_per_pixel": "file size per pixel",
    "grayscale": "grayscale image (gray mode or equal colour channels)",
    "mode": "colour mode stored in the file (RGB, L, RGBA, P, ...)",
    "exif": "has EXIF metadata",
    "icc_profile": "has an ICC colour profile",
}
CATEGORICAL = ("format", "mode", "subsampling")
CLASS_NAMES = ("real", "fake")


def ijg_table(base: np.ndarray, quality: int) -> np.ndarray:
    """The quantization table libjpeg writes for `quality` (1..100) from a base table (baseline, max 255)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


def estimate_jpeg_quality(tables: dict[int, Any]) -> tuple[int, bool]:
    """Estimate the IJG quality (1..100) that produced these quantization tables.

    Args:
        tables: Pillow's `image.quantization`: table id -> 64 values in natural order.

    Returns:
        (quality whose standard tables are closest, True when they match exactly). Encoders with their own
        tables (cameras, Photoshop, mozjpeg) get the nearest IJG quality and False.
    """
    luma = np.asarray(tables[0], dtype=np.int64)
    chroma = np.asarray(tables[1], dtype=np.int64) if 1 in tables else None
    best_quality, best_error = 0, None
    for quality in range(1, 101):
        error = int(np.abs(ijg_table(STANDARD_LUMA, quality) - luma).sum())
        if chroma is not None:
            error += int(np.abs(ijg_table(STANDARD_CHROMA, quality) - chroma).sum())
        if best_error is None or error <= best_error:  # ties go to the higher quality
            best_quality, best_error = quality, error
    return best_quality, best_error == 0


def _is_grayscale(image: Image.Image) -> bool:
    """Gray modes, or colour whose channels agree (99% of pixels within 4 levels) on a reduced decode."""
    if image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
        return True
    if image.format == "JPEG":
        image.draft("RGB", (64, 64))  # decode at 1/2..1/8 scale: channel agreement survives it
    else:
        image.thumbnail((128, 128))
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    spread = rgb.max(axis=2) - rgb.min(axis=2)
    return bool(np.percentile(spread, 99) <= 4)


def file_metadata(path: Path) -> dict[str, Any]:
    """Metadata of one image file, never its content; an unreadable file gives a row with `error` set."""
    row: dict[str, Any] = {"file_bytes": path.stat().st_size if path.exists() else 0, "error": ""}
    try:
        with Image.open(path) as image:
            width, height = image.size
            is_jpeg = image.format == "JPEG"
            quality, exact = estimate_jpeg_quality(image.quantization) if is_jpeg else (-1, False)
            row.update(
                format=image.format or "unknown", mode=image.mode, width=width, height=height,
                jpeg_quality=quality, ijg_tables=int(exact) if is_jpeg else -1,
                subsampling=SUBSAMPLING_NAMES.get(JpegImagePlugin.get_sampling(image), "other") if is_jpeg else "none",
                progressive=int(bool(image.info.get("progressive") or image.info.get("progression"))),
                exif=int(bool(image.info.get("exif"))), icc_profile=int(bool(image.info.get("icc_profile"))),
                bytes_per_pixel=row["file_bytes"] / max(width * height, 1))
            row["grayscale"] = int(_is_grayscale(image))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        row["error"] = f"{type(error).__name__}: {error}"
    return row


def collect_metadata(data_dir: str | Path) -> pd.DataFrame:
    """One row per image under `real/` and `fake/`: relpath, label (0 real, 1 fake), class, metadata, error."""
    from fakelib.layout import LABELS, dataset_files  # shared discovery: same folders, suffixes and skips as training

    root = Path(data_dir)
    files = dataset_files(root)
    with ThreadPoolExecutor(max_workers=4) as pool:  # Pillow releases the GIL while decoding
        rows = list(pool.map(lambda item: _file_row(root, item[0]), files))
    folders = unreadable_folders(root)
    entries = files + [(relpath, label) for relpath, label, _ in folders]
    rows += [{"file_bytes": 0, "error": error} for _, _, error in folders]
    names = {label: name for name, label in LABELS.items()}
    frame = pd.DataFrame(rows)
    frame.insert(0, "relpath", [display_name(relpath) for relpath, _ in entries])
    frame.insert(1, "label", [label for _, label in entries])
    frame.insert(2, "class", [names[label] for _, label in entries])
    return frame


def display_name(relpath: str) -> str:
    """A path as text: a byte that is not UTF-8 shows as `\\xff`, so the reports can be written."""
    return relpath.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _file_row(root: Path, relpath: str) -> dict[str, Any]:
    """The metadata of one file; a name that is not UTF-8 is a row with `error` set (the rest goes on)."""
    if display_name(relpath) != relpath:
        return {"file_bytes": 0, "error": "file name is not valid UTF-8; rename it"}
    return file_metadata(root / relpath)


def unreadable_folders(root: Path) -> list[tuple[str, int, str]]:
    """Folders under `real/` and `fake/` that cannot be listed, as (relpath ending in "/", label, error).

    The shared listing (`fakelib.layout.dataset_files`) walks with `rglob`, which leaves such a folder out without
    a word; the audit lists it among the unreadable entries instead.
    """
    from fakelib.layout import LABELS, class_folders

    found: list[tuple[str, int, str]] = []
    for name, folder in class_folders(root).items():
        def failed(error: OSError, label: int = LABELS[name]) -> None:
            relpath = Path(error.filename).relative_to(root).as_posix() + "/"
            found.append((relpath, label, f"unreadable folder: {error.strerror or error}"))

        for _ in os.walk(folder, onerror=failed):
            pass
    return sorted(found)


def _numeric_summary(values: pd.Series) -> dict[str, float]:
    return {"min": float(values.min()), "median": float(values.median()), "mean": round(float(values.mean()), 3),
            "max": float(values.max())}


def _shares(values: pd.Series, top: int = 8) -> dict[str, float]:
    counts = Counter(str(value) for value in values)
    return {key: round(count / len(values), 4) for key, count in counts.most_common(top)}


def class_summary(frame: pd.DataFrame) -> dict[str, Any]:
    """Counts, shares and ranges of the metadata of one class (readable files only)."""
    jpeg = frame[frame["format"] == "JPEG"]
    return {
        "count": int(len(frame)),
        "formats": _shares(frame["format"]),
        "jpeg_quality": (_numeric_summary(jpeg["jpeg_quality"]) | {"values": _shares(jpeg["jpeg_quality"])})
        if len(jpeg) else None,
        "ijg_tables_share": round(float(jpeg["ijg_tables"].mean()), 4) if len(jpeg) else None,
        "subsampling": _shares(jpeg["subsampling"]) if len(jpeg) else None,
        "pixel_sizes": _shares(frame["width"].astype(str) + "x" + frame["height"].astype(str)),
        "width": _numeric_summary(frame["width"]),
        "height": _numeric_summary(frame["height"]),
        "file_bytes": _numeric_summary(frame["file_bytes"]),
        "grayscale_share": round(float(frame["grayscale"].mean()), 4),
        "modes": _shares(frame["mode"]),
        "progressive_share": round(float(frame["progressive"].mean()), 4),
        "exif_share": round(float(frame["exif"].mean()), 4),
        "icc_profile_share": round(float(frame["icc_profile"].mean()), 4),
    }


def feature_matrix(frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Numeric design matrix (categoricals one-hot) and, per column, the feature it comes from."""
    columns, groups = [], []
    for feature in FEATURES:
        if feature in CATEGORICAL:
            for value in sorted(frame[feature].astype(str).unique()):
                columns.append((frame[feature].astype(str) == value).to_numpy(dtype=np.float64))
                groups.append(feature)
        else:
            columns.append(frame[feature].to_numpy(dtype=np.float64))
            groups.append(feature)
    return np.stack(columns, axis=1), groups


def _cv_auc(model, features: np.ndarray, labels: np.ndarray, folds: int) -> tuple[float, float]:
    """Mean and standard deviation of the stratified k-fold ROC-AUC; 0.5 when a feature is constant."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    if np.all(features == features[:1]):
        return 0.5, 0.0
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    scores = cross_val_score(model, features, labels, cv=splitter, scoring="roc_auc")
    return float(scores.mean()), float(scores.std())


def metadata_classifier(frame: pd.DataFrame) -> dict[str, Any]:
    """Cross-validated ROC-AUC of a random forest on all metadata, and of a small tree on each feature alone."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    labels = frame["label"].to_numpy()
    folds = int(min(CV_FOLDS, np.bincount(labels, minlength=2).min()))
    if folds < 2:
        return {"roc_auc": None, "roc_auc_std": None, "feature_auc": {}, "cv_folds": folds}
    matrix, groups = feature_matrix(frame)
    forest = RandomForestClassifier(n_estimators=100, max_depth=6, min_samples_leaf=5, random_state=0, n_jobs=1)
    roc_auc, roc_auc_std = _cv_auc(forest, matrix, labels, folds)
    tree = DecisionTreeClassifier(max_leaf_nodes=16, min_samples_leaf=5, random_state=0)
    feature_auc = {}
    for feature in FEATURES:
        mask = np.array([group == feature for group in groups])
        feature_auc[feature] = round(_cv_auc(tree, matrix[:, mask], labels, folds)[0], 4)
    ranked = dict(sorted(feature_auc.items(), key=lambda item: -item[1]))
    return {"roc_auc": round(roc_auc, 4), "roc_auc_std": round(roc_auc_std, 4), "feature_auc": ranked,
            "cv_folds": folds, "classifier": "random forest (100 trees, depth 6) on metadata only"}


def describe_feature(feature: str, per_class: dict[str, Any], frame: pd.DataFrame) -> str:
    """One phrase contrasting the classes on `feature`, e.g. `real JPEG 100%, fake PNG 100%`."""
    parts = []
    for name in per_class:
        values = frame.loc[frame["class"] == name, feature]
        if feature in CATEGORICAL or values.nunique() <= 3:
            value, count = Counter(str(item) for item in values).most_common(1)[0]
            parts.append(f"{name} {value} {count / len(values):.0%}")
        else:
            parts.append(f"{name} median {values.median():g}")
    return ", ".join(parts)


def audit_dataset(data_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Audit a dataset folder (`real/`, `fake/`) for metadata that separates the classes.

    Args:
        data_dir: the dataset root.
        out_dir: where to write `audit.json`, `audit.png` and `metadata.csv`; nothing is written when None.

    Returns:
        The report: `per_class` summaries, `roc_auc` (cross-validated, metadata only, None with too few images),
        `feature_auc` per feature, `top_feature`, `warning` (a sentence, or None when `roc_auc` <= 0.7),
        `unreadable` files with their error.

    Raises:
        FileNotFoundError, NotADirectoryError, ValueError: no dataset at `data_dir` (one line).
    """
    frame = collect_metadata(data_dir)
    readable = frame[frame["error"] == ""].reset_index(drop=True)
    per_class = {name: class_summary(readable[readable["class"] == name]) for name in CLASS_NAMES
                 if (readable["class"] == name).any()}
    result = metadata_classifier(readable) if readable["class"].nunique() == 2 else {
        "roc_auc": None, "roc_auc_std": None, "feature_auc": {}, "cv_folds": 0}
    top_feature = next(iter(result["feature_auc"]), None)
    report = {
        "data_dir": str(data_dir),
        "n_files": {name: int((frame["class"] == name).sum()) for name in CLASS_NAMES},
        "n_unreadable": int((frame["error"] != "").sum()),
        "unreadable": frame.loc[frame["error"] != "", ["relpath", "error"]].head(20).to_dict("records"),
        "per_class": per_class,
        **result,
        "top_feature": top_feature,
        "top_feature_auc": result["feature_auc"].get(top_feature) if top_feature else None,
        "warning_threshold": WARNING_AUC,
        "warning": None,
        "features": FEATURES,
    }
    if report["roc_auc"] is not None and report["roc_auc"] > WARNING_AUC:
        report["warning"] = (
            f"metadata alone tell real from fake (cross-validated ROC-AUC {report['roc_auc']:.2f} > {WARNING_AUC}): "
            f"the classes can be told apart without looking at the faces. Most separating feature: {top_feature} "
            f"(AUC {report['top_feature_auc']:.2f}; {describe_feature(top_feature, per_class, readable)}). "
            "Re-encode every image the same way (data.equalize_quality) or balance the sources before training.")
    if out_dir is not None:
        report["files"] = write_outputs(report, readable, Path(out_dir))
    return report


def write_outputs(report: dict[str, Any], frame: pd.DataFrame, out_dir: Path) -> dict[str, str]:
    """Write audit.json, metadata.csv and audit.png into `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out_dir / "audit.json"), "figure": str(out_dir / "audit.png"),
             "metadata": str(out_dir / "metadata.csv")}
    frame.to_csv(files["metadata"], index=False)
    plot_audit(report, frame, files["figure"])
    Path(files["json"]).write_text(json.dumps({**report, "files": files}, indent=2, default=str))
    return files


def plot_audit(report: dict[str, Any], frame: pd.DataFrame, path: str | Path) -> None:
    """Three panels: single-feature AUCs against the warning line, file sizes per class, encodings per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    auc = report["feature_auc"]
    names = list(auc)[::-1]
    axes[0].barh(names, [auc[name] for name in names], color="tab:gray")
    axes[0].axvline(WARNING_AUC, color="tab:red", linestyle="--", label=f"warning at {WARNING_AUC}")
    axes[0].set_xlim(0.4, 1.0)
    overall = report["roc_auc"]
    axes[0].set_title(f"metadata-only ROC-AUC per feature (all: {overall if overall is not None else 'n/a'})")
    axes[0].legend(loc="lower right", fontsize=8)
    for name in CLASS_NAMES:
        axes[1].hist(frame.loc[frame["class"] == name, "file_bytes"] / 1024, bins=40, alpha=0.5, label=name)
    axes[1].set_xlabel("file size (KiB)")
    axes[1].set_title("file sizes")
    axes[1].legend()
    encoding = frame["format"] + np.where(frame["format"] == "JPEG", " q" + frame["jpeg_quality"].astype(str), "")
    shares = pd.crosstab(encoding, frame["class"], normalize="columns")
    shares = shares[[name for name in CLASS_NAMES if name in shares.columns]]
    shares = shares.loc[shares.max(axis=1).sort_values(ascending=False).index[:8]]
    shares.plot.barh(ax=axes[2])
    axes[2].set_title("format and JPEG quality (share of class)")
    axes[2].set_xlabel("share")
    axes[2].set_ylabel("")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def print_audit(data_dir: str | Path, out_dir: str | Path | None = None) -> int:
    """Audit `data_dir`, write audit.json and the figure into `out_dir` (default `reports/audit/<folder name>`), and
    print the summary and warning. Returns the exit status, 0."""
    data_dir = Path(data_dir)
    out_dir = Path(out_dir) if out_dir else paths.REPORTS / "audit" / data_dir.resolve().name
    report = audit_dataset(data_dir, out_dir)
    for name, summary in report["per_class"].items():
        quality = summary["jpeg_quality"]
        print(f"{name:>5}: {summary['count']} files; formats {summary['formats']}; "
              f"JPEG quality {quality['values'] if quality else 'n/a'}; sizes {summary['pixel_sizes']}; "
              f"median {summary['file_bytes']['median'] / 1024:.1f} KiB; grayscale {summary['grayscale_share']:.1%}")
    if report["n_unreadable"]:
        print(f"unreadable: {report['n_unreadable']} files (listed in audit.json)")
    if report["roc_auc"] is None:
        print("metadata classifier: not enough images of both classes")
    else:
        print(f"metadata-only classifier: ROC-AUC {report['roc_auc']:.3f} +- {report['roc_auc_std']:.3f} "
              f"({report['cv_folds']}-fold); most separating feature: {report['top_feature']} "
              f"(AUC {report['top_feature_auc']:.3f})")
    print(f"WARNING: {report['warning']}" if report["warning"] else
          f"no warning: metadata-only ROC-AUC is at most {WARNING_AUC}")
    print(f"wrote {report['files']['json']} and {report['files']['figure']}")
    return 0
