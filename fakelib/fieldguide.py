"""The field guide's measurements: landmark regions, heatmaps of every layer, region deletion per layer and method,
the contrastive ranking from the layers that pass, tips and gallery crops (notebooks/05_field_guide.ipynb).

`study(model, sample, threshold)` does the work once and returns a `Study`; the notebook draws it and
`record(study)` turns it into the JSON the notebook writes (`field_guide.json`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from fakelib import atomic, contrast, explain, landmarks, paths, quality, regions


@dataclass
class Study:
    """Everything the field guide shows, measured on one sample of a folder.

    Attributes:
        sample: the faces (`quality.Sample`), raw pixels at the model's input size.
        region_maps: per-image regions and their statuses (`landmarks.RegionMaps`).
        probabilities: (n,) p_fake.
        caught, correct_reals: (n,) bool selections (`contrast.groups`).
        heatmaps: method -> layer -> (n, size, size) maps in [0, 1].
        faithfulness: method -> layer -> `quality.region_deletion` figures plus "sanity_rank_correlation".
        method, layers: where the advice comes from: the method and the layers whose deletion test passes (or the
            single best layer, with `trusted` False, when none passes).
        advice_maps: (n, size, size) mean of the advice layers' maps.
        ranking: `contrast.contrast_ranking` of the advice maps; peaks: `contrast.peak_shares`.
    """

    sample: quality.Sample
    region_maps: landmarks.RegionMaps
    probabilities: np.ndarray
    caught: np.ndarray
    correct_reals: np.ndarray
    heatmaps: dict[str, dict[str, np.ndarray]]
    faithfulness: dict[str, dict[str, dict]]
    method: str
    layers: list[str]
    trusted: bool
    advice_maps: np.ndarray
    ranking: pd.DataFrame
    peaks: pd.DataFrame
    threshold: float = 0.5
    extra: dict = field(default_factory=dict)


def _faithfulness(model, sample, maps, caught, heatmaps, randomized, method, seed) -> dict[str, dict]:
    """Region deletion on the caught fakes for every layer of one method, with the randomized-weights check."""
    random_maps = explain.compute_cams(randomized, sample.images[caught], method, list(heatmaps)).heatmaps \
        if randomized is not None and caught.any() else {}
    figures = {}
    for layer, layer_maps in heatmaps.items():
        lifts = contrast.image_lifts(layer_maps, maps.labels)
        figures[layer] = quality.region_deletion(model, sample.images[caught], lifts[caught], maps.labels[caught],
                                                 seed=seed) if caught.any() else {"n_images": 0, "passes": False}
        if layer in random_maps:
            correlation = quality.rank_correlation(layer_maps[caught], random_maps[layer])
            figures[layer]["sanity_rank_correlation"] = quality._mean(correlation)
    return figures


def choose_layers(faithfulness: dict[str, dict[str, dict]]) -> tuple[str, list[str], bool]:
    """(method, layers, trusted): the method with the most passing layers (ties: the higher best ratio) and those
    layers; when no layer passes anywhere, the single layer with the largest gain, untrusted."""
    def best_ratio(per_layer):
        return max((figures.get("ratio_random") or 0.0 for figures in per_layer.values()), default=0.0)

    passing = {method: [layer for layer, figures in per_layer.items() if figures.get("passes")]
               for method, per_layer in faithfulness.items()}
    method = max(faithfulness, key=lambda name: (len(passing[name]), best_ratio(faithfulness[name])))
    if passing[method]:
        return method, passing[method], True
    method, layer = max(((name, layer) for name, per_layer in faithfulness.items() for layer in per_layer),
                        key=lambda pair: faithfulness[pair[0]][pair[1]].get("gain") or -np.inf)
    return method, [layer], False


def study(model: keras.Model, sample: quality.Sample, threshold: float = 0.5, methods: Sequence[str] = ("layercam",),
          layers: Sequence[str] | None = None, sanity: bool = True, cache_dir: str | Path | None = None,
          seed: int = 0, template: bool = False) -> Study:
    """Measure everything the field guide shows on `sample` (both classes) with `model`.

    `template` True uses the aligned template for every face instead of its landmarks (for comparison).

    Raises:
        ValueError: no method given, or an unknown method or layer.
    """
    if not methods:
        raise ValueError("methods must name at least one CAM method; available: " + ", ".join(explain.list_methods()))
    maps = landmarks.template_maps(sample.images) if template else landmarks.region_maps(sample.images, cache_dir)
    randomized = quality.randomized_copy(model, seed) if sanity else None
    heatmaps, faithfulness, probabilities = {}, {}, None
    for method in methods:
        cams = explain.compute_cams(model, sample.images, method, layers)
        probabilities = cams.probabilities
        caught, correct = contrast.groups(sample.labels, probabilities, threshold)
        heatmaps[method] = cams.heatmaps
        faithfulness[method] = _faithfulness(model, sample, maps, caught, cams.heatmaps, randomized, method, seed)
    method, chosen, trusted = choose_layers(faithfulness)
    advice_maps = explain.normalize(np.mean([heatmaps[method][layer] for layer in chosen], axis=0))
    lifts = contrast.image_lifts(advice_maps, maps.labels)
    ranking = contrast.contrast_ranking(lifts[caught], lifts[correct], seed=seed)
    peaks = contrast.top_regions(lifts)
    return Study(sample, maps, probabilities, caught, correct, heatmaps, faithfulness, method, chosen, trusted,
                 advice_maps, ranking, contrast.peak_shares(peaks[caught], peaks[correct]), threshold)


def faithfulness_table(study: Study) -> pd.DataFrame:
    """One row per (method, layer): the deletion figures in logits and a plain "pass"/"fail"."""
    rows = []
    for method, per_layer in study.faithfulness.items():
        for layer, figures in per_layer.items():
            rows.append({"method": method, "layer": layer, "result": "pass" if figures.get("passes") else "fail",
                         "top region vs random patch": figures.get("ratio_random"),
                         "top region vs lowest region": figures.get("ratio_lowest"),
                         "logit drop: top": figures.get("drop_top"), "random": figures.get("drop_random"),
                         "lowest": figures.get("drop_lowest"), "top beats random": figures.get("win_rate"),
                         "rank corr. with random weights": figures.get("sanity_rank_correlation")})
    return pd.DataFrame(rows)


def gallery_regions(study: Study, top: int = 3) -> list[str]:
    """The regions the galleries show: the top `top` of the contrastive ranking (the gallery titles give each
    region's verdict, so a region the model reads on every face is shown as such, not as advice)."""
    return list(study.ranking.dropna(subset=["difference"]).head(top)["region"])


def gallery_title(study: Study, region: str) -> str:
    """A gallery's title: the region, its lifts on both classes and its verdict."""
    row = study.ranking.set_index("region").loc[region]
    verdict = {"fakes": "more evidence on fakes", "every face": "the model looks here on every face",
               "reals": "more evidence on real faces"}.get(row["verdict"], row["verdict"])
    return (f"{row['label']} (lift {row['lift_fake']:.2f} on caught fakes, {row['lift_real']:.2f} on real faces: "
            f"{verdict})\ncaught fakes above, real faces below")


def crop_box(mask: np.ndarray, heatmap: np.ndarray | None = None, margin: float = 0.35,
             minimum: int = 8) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) square box around a (size, size) mask, widened by `margin`; None if empty.

    With a `heatmap`, a region in several parts (two eyes, two ears) is cropped around the part holding the most
    heat, so the crop zooms in on one eye instead of showing the whole face.
    """
    from scipy import ndimage

    parts, count = ndimage.label(mask)
    if count > 1 and heatmap is not None:
        heat = ndimage.sum(heatmap, parts, index=np.arange(1, count + 1))
        mask = parts == 1 + int(np.argmax(heat))
    rows, columns = np.nonzero(mask)
    if not rows.size:
        return None
    size = mask.shape[0]
    centre = ((rows.min() + rows.max()) / 2, (columns.min() + columns.max()) / 2)
    half = max(rows.max() - rows.min(), columns.max() - columns.min(), minimum) * (1 + margin) / 2
    top = int(np.clip(round(centre[0] - half), 0, size - 1))
    left = int(np.clip(round(centre[1] - half), 0, size - 1))
    return top, int(min(size, top + 2 * half + 1)), left, int(min(size, left + 2 * half + 1))


def gallery_examples(study: Study, region: str, per_class: int = 4) -> dict[str, list[int]]:
    """Indices of the caught fakes with the highest lift in `region` and of correct reals (their highest too, so
    the reals shown are the ones where the model looked there most: a fair comparison, not a flattering one)."""
    index = regions.REGIONS.index(region)
    lifts = contrast.image_lifts(study.advice_maps, study.region_maps.labels)[:, index]
    chosen = {}
    for name, selection in (("fake", study.caught), ("real", study.correct_reals)):
        candidates = np.flatnonzero(selection & ~np.isnan(lifts))
        chosen[name] = list(candidates[np.argsort(-lifts[candidates], kind="stable")][:per_class])
    return chosen


def record(study: Study, **context) -> dict:
    """The JSON-ready summary the notebook writes as field_guide.json."""
    found = study.region_maps.found
    return quality.json_ready({
        **context, "n_images": int(len(study.sample.labels)), "n_caught_fakes": int(study.caught.sum()),
        "n_correct_reals": int(study.correct_reals.sum()), "threshold": study.threshold,
        "landmarks_found": float(found.mean()) if len(found) else None,
        "region_statuses": pd.Series(study.region_maps.statuses).value_counts().to_dict(),
        "advice_method": study.method, "advice_layers": study.layers, "advice_trusted": study.trusted,
        "ranking": study.ranking.to_dict("records"), "peaks": study.peaks.to_dict("records"),
        "advice": contrast.advice(study.ranking), "tips": contrast.tips(study.ranking, study.peaks),
        "faithfulness": study.faithfulness, "gallery_regions": gallery_regions(study),
    })


def summary_line(study: Study, model_path, data_dir) -> str:
    """What was measured: model, folder, counts, and how many faces had their own landmarks."""
    found = int(study.region_maps.found.sum())
    total = len(study.region_maps.statuses)
    reasons = sorted(set(study.region_maps.statuses) - {landmarks.LANDMARKS_STATUS})
    fallback = "" if found == total else f"; the other {total - found} use the aligned template ({', '.join(reasons)})"
    return (f"Model {model_path} on {data_dir}: {total} faces, {int(study.caught.sum())} caught fakes and "
            f"{int(study.correct_reals.sum())} real faces classified correctly (threshold {study.threshold:.2f}). "
            f"Regions from each face's own landmarks on {found} of {total} faces{fallback}.")


def ranking_view(ranking: pd.DataFrame) -> pd.DataFrame:
    """The contrastive ranking as a readable table (rounded, interval as text)."""
    view = ranking[["rank", "label", "lift_fake", "lift_real", "difference", "ci_low", "ci_high", "verdict"]].copy()
    view["95% interval"] = [f"{low:.2f} to {high:.2f}" if pd.notna(low) else "n/a"
                            for low, high in zip(view.pop("ci_low"), view.pop("ci_high"))]
    return view.rename(columns={"label": "region", "lift_fake": "lift on caught fakes",
                                "lift_real": "lift on real faces"}).round(2).set_index("rank")


def faithfulness_lines(study: Study) -> list[str]:
    """The deletion test as plain pass/fail sentences, and where the advice comes from."""
    lines = []
    for method, per_layer in study.faithfulness.items():
        passed = [layer for layer, figures in per_layer.items() if figures.get("passes")]
        failed = [layer for layer in per_layer if layer not in passed]
        lines.append(f"{method}: PASS for {', '.join(passed) or 'no layer'}; "
                     f"FAIL for {', '.join(failed) or 'no layer'} "
                     f"(pass = blurring the top region lowers the fake logit at least {quality.REGION_PASS_RATIO:g}x "
                     "as much as blurring a random patch of the same area, on most caught fakes).")
    source = f"{study.method} {', '.join(study.layers)}"
    lines.append(f"The advice comes from {source}." if study.trusted else
                 f"No layer passes: the ranking above comes from {source}, the best of them, and is not to be trusted.")
    return lines


def masked_examples(study: Study, count: int) -> np.ndarray:
    """Indices of up to `count` caught fakes that carry a ground-truth artifact mask (demo data), else empty."""
    return np.flatnonzero(study.caught & study.sample.has_mask)[:count]


def write_json(path: str | Path, payload: dict) -> None:
    """Write `payload` as indented JSON, atomically (a reader never sees half a file)."""
    atomic.write_json(path, quality.json_ready(payload))


# ------------------------------------------------------------------------------------------------ running the notebook

NOTEBOOK = paths.NOTEBOOKS / "05_field_guide.ipynb"
OUTPUT_FOLDER, HTML_NAME = "field_guide", "field_guide.html"


def export_html(notebook_path: Path, html_path: Path) -> None:
    """The executed field guide as one offline HTML page without code (`report.offline_html`), written atomically."""
    import nbformat

    from fakelib.report import offline_html

    atomic.write_text(html_path, offline_html(nbformat.read(str(notebook_path), as_version=4)))


def run_field_guide(data_dir: str | Path, model_path: str | Path | None = None, reports_dir: str | Path = paths.REPORTS,
                    overrides: dict | None = None) -> Path:
    """Execute notebooks/05_field_guide.ipynb into `reports_dir/field_guide/` and export `reports_dir/field_guide.html`
    (also after a failed cell, so the page shows where it stopped). Returns the HTML path.

    Raises:
        Exception: whatever the notebook raised (papermill's `PapermillExecutionError`), after the export.
    """
    from fakelib import sweep

    reports_dir = Path(reports_dir)
    output_dir = reports_dir / OUTPUT_FOLDER
    output_dir.mkdir(parents=True, exist_ok=True)
    executed, html_path = output_dir / NOTEBOOK.name, reports_dir / HTML_NAME
    parameters = {"model_path": str(model_path or ""), "data_dir": str(data_dir), "output_dir": str(output_dir),
                  **(overrides or {})}
    try:
        sweep.execute_notebook(NOTEBOOK, executed, parameters)
    finally:
        if executed.is_file():
            export_html(executed, html_path)
    return html_path


def run_stage(model_path: Path, data_dir: str | Path, reports_dir: Path) -> dict[str, str]:
    """The sweep's field-guide step: `run_field_guide` into a reports folder the tracker shares with others.

    Only files this step wrote before are replaced (`ownership.WrittenFiles`); a failure is returned, not raised.

    Returns:
        {"status": "done" | "failed", "error": one line, "html": the page relative to `reports_dir`}.
    """
    from fakelib.ownership import WrittenFiles
    from fakelib.sweep import one_line_error

    output_dir, html_path = reports_dir / OUTPUT_FOLDER, reports_dir / HTML_NAME
    written = WrittenFiles(reports_dir)
    written.remove(output_dir)
    written.remove(html_path)
    foreign = {path for path in output_dir.rglob("*")} if output_dir.is_dir() else set()
    status = {"status": "done", "error": "", "html": HTML_NAME}
    try:
        run_field_guide(data_dir, model_path, reports_dir)
    except Exception as error:  # the sweep's results stand without the field guide; the summary says why
        status.update(status="failed", error=one_line_error(error))
    finally:
        new = [path for path in output_dir.rglob("*") if path.is_file() and path not in foreign] \
            if output_dir.is_dir() else []
        written.add([*new, *([html_path] if html_path.is_file() else [])])
    return status


def write_field_guide(data_dir: str | Path, model: str | Path | None = None, reports: str | Path = "reports",
                      per_class: int | None = None) -> int:
    """`python -m fakelib field-guide DATA_DIR`: write the field guide page; prints where, or the failed cell's line."""
    from fakelib.layout import class_folders

    class_folders(paths.resolve(Path.cwd() / data_dir))  # a folder without real/ and fake/: one line
    if model and not paths.resolve(Path.cwd() / model).is_file():
        raise FileNotFoundError(f"model file not found: {model}")
    from fakelib.sweep import one_line_error

    overrides = {"per_class": per_class} if per_class else {}
    try:
        html_path = run_field_guide(paths.resolve(Path.cwd() / data_dir),
                                    paths.resolve(Path.cwd() / model) if model else None,
                                    paths.resolve(Path.cwd() / reports), overrides)
    except Exception as error:  # a failed cell: its one line, the page still shows where it stopped
        print(f"fakelib field-guide: failed: {one_line_error(error)}")
        return 1
    print(f"field guide: {html_path}")
    return 0
