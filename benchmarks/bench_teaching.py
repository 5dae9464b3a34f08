"""Benchmark: the teaching figures of a folder: landmark hit rate and agreement with the template, or the field
guide's faithfulness and contrastive ranking.

Prints one JSON object. Two measurements (issue 11's goals):

    # landmark regions found on >= 95% of faces; IoU per region against the aligned template on the found faces
    .venv/bin/python benchmarks/bench_teaching.py landmarks DATA_DIR [--limit N] [--size 256]
    # region deletion per layer and method (top region vs a random patch of the same area, goal >= 3x for the
    # best layer), and the contrastive ranking with its bootstrap intervals, on the folder's test split
    .venv/bin/python benchmarks/bench_teaching.py faithfulness DATA_DIR [--model PATH] [--per-class 120]

Every figure is a ratio against a bound measured in the same run (random patch, template), never a time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def landmark_figures(data_dir: Path, size: int, limit: int | None, seed: int) -> dict:
    """Hit rate of the landmark detector on every image of `data_dir` (or `limit` per class) and IoU per region."""
    import numpy as np

    from fakelib import landmarks, quality

    sample = quality.load_sample(data_dir, size, per_class=limit, split=None, seed=seed)
    started = time.perf_counter()
    maps = landmarks.region_maps(sample.images)
    seconds = time.perf_counter() - started
    found = maps.found
    by_group = {}
    for relpath, hit in zip(sample.relpaths, found):
        group = str(Path(relpath).parent)
        by_group.setdefault(group, []).append(bool(hit))
    return {"benchmark": "landmark_regions", "data_dir": str(data_dir), "size": size, "n_images": int(len(found)),
            "found_rate": float(found.mean()), "goal_found_rate": 0.95, "meets_goal": bool(found.mean() >= 0.95),
            "found_rate_by_folder": {group: float(np.mean(hits)) for group, hits in sorted(by_group.items())},
            "missed": [relpath for relpath, hit in zip(sample.relpaths, found) if not hit][:20],
            "iou_with_template": landmarks.template_iou(maps.labels[found]) if found.any() else None,
            "seconds_per_image": round(seconds / len(found), 4), "unusable_files": len(sample.errors)}


def faithfulness_figures(data_dir: Path, model_path: str | None, per_class: int, methods: list[str],
                         seed: int, template: bool = False) -> dict:
    """The field guide's study on the test split of `data_dir`: deletion per layer and method, and the ranking."""
    from fakelib import fieldguide, quality
    from fakelib.predict import Predictor

    predictor = Predictor.from_path(model_path)
    sample = quality.load_sample(data_dir, predictor.image_size, per_class=per_class, split="test", seed=seed,
                                 equalize_quality=predictor.equalize_quality)
    study = fieldguide.study(predictor.model, sample, predictor.model_threshold, methods, seed=seed, template=template)
    best = max(((method, layer, figures) for method, per_layer in study.faithfulness.items()
                for layer, figures in per_layer.items()), key=lambda item: item[2].get("ratio_random") or 0.0)
    summary = fieldguide.record(study, model=str(predictor.model_path), data_dir=str(data_dir))
    return {"benchmark": "field_guide_faithfulness", "regions": "template" if template else "landmarks", **summary,
            "best_layer": {"method": best[0], "layer": best[1], "ratio_random": best[2].get("ratio_random")},
            "goal_ratio": quality.REGION_PASS_RATIO,
            "meets_goal": bool((best[2].get("ratio_random") or 0.0) >= quality.REGION_PASS_RATIO)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("measure", choices=("landmarks", "faithfulness"))
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--size", type=int, default=256, help="landmarks: image side the faces are fitted to")
    parser.add_argument("--limit", type=int, default=None, help="landmarks: at most this many per class")
    parser.add_argument("--model", default=None, help="faithfulness: model.keras (default: the default model)")
    parser.add_argument("--per-class", type=int, default=120, help="faithfulness: test faces per class")
    parser.add_argument("--methods", default="layercam,gradcam", help="faithfulness: CAM methods, comma-separated")
    parser.add_argument("--template", action="store_true",
                        help="faithfulness: the aligned template for every face instead of its landmarks")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.measure == "landmarks":
        result = landmark_figures(args.data_dir, args.size, args.limit, args.seed)
    else:
        result = faithfulness_figures(args.data_dir, args.model, args.per_class,
                                      [name for name in args.methods.split(",") if name], args.seed, args.template)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    from fakelib.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    main()
