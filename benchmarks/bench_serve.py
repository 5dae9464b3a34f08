"""Benchmark: upload to verdict plus heatmaps in the explorer, driven through the same code as the served page.

Each upload goes through `fakelib.explore.Explorer.set_upload`, `verdict_html` and `Explorer.picture`, which is
all the page's upload callback does besides sending the result to the browser. The first upload (model loading,
graph tracing) is reported apart; the goal is a median of at most 1 s over the uploads after it, on 2 cores.

The default model is the base architecture of params.yaml at its input side, with untrained weights (the time
does not depend on them), saved as a run folder with params.yaml and metrics.json like train writes; `--model`
times a trained model instead. Uploads are distinct demo faces rendered at `--upload-side`, encoded as JPEG.
Prints one JSON object.

    .venv/bin/python benchmarks/bench_serve.py [--model PATH] [--uploads 12] [--upload-side 256]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

GOAL_SECONDS = 1.0
# The explore notebook's default CAM method, what the page computes for an upload.
METHOD = "layercam"


def base_model_folder(folder: Path) -> Path:
    """The base configuration of params.yaml built with fresh weights, saved as a run folder; its model path."""
    from fakelib.config import load_params
    from fakelib.models import create_model

    config = load_params().base
    model = create_model(config.model.model, config.data.image_size, **config.model.builder_params())
    model.save(folder / "model.keras")
    config.save(folder / "params.yaml")
    (folder / "metrics.json").write_text(json.dumps({"model": config.model.model, "threshold": 0.5}))
    return folder / "model.keras"


def face_jpegs(count: int, side: int, seed: int) -> list[bytes]:
    """`count` distinct demo faces (alternately real and fake) as JPEG files of `side` px."""
    from PIL import Image

    from fakelib.demo import render_face
    import numpy as np

    files = []
    for index in range(count):
        pixels, _, _ = render_face(np.random.default_rng([seed, index]), side, index % 2 == 1, 1.0)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        files.append(buffer.getvalue())
    return files


def one_upload(explorer, name: str, content: bytes) -> dict[str, float]:
    """What the page's upload callback does, timed in its two parts: verdict, then the heatmap picture."""
    from fakelib import explore

    started = time.perf_counter()
    verdict = explorer.set_upload(name, content)
    explore.verdict_html(verdict)
    analysed = time.perf_counter()
    png = explorer.picture()
    finished = time.perf_counter()
    if not verdict.ok or not png:
        raise SystemExit(f"bench_serve: the upload gave no verdict: {verdict.message}")
    return {"total": finished - started, "verdict": analysed - started, "picture": finished - analysed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a trained model.keras (default: the base architecture)")
    parser.add_argument("--uploads", type=int, default=12, help="uploads after the first one")
    parser.add_argument("--upload-side", type=int, default=256, help="side of the uploaded faces in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from fakelib.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()
    from fakelib import explore

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as folder:
        model_path = Path(args.model) if args.model else base_model_folder(Path(folder))
        explorer = explore.Explorer({"model": str(model_path)}, method=METHOD)
        files = face_jpegs(args.uploads + 1, args.upload_side, args.seed)
        first = one_upload(explorer, "face-0.jpg", files[0])
        later = [one_upload(explorer, f"face-{index}.jpg", content) for index, content in enumerate(files[1:], 1)]
        input_side = explorer.predictor().image_size
        layers = explorer.verdict.result.layers

    median = {part: statistics.median(times[part] for times in later) for part in ("total", "verdict", "picture")}
    print(json.dumps({
        "benchmark": "serve_upload_to_verdict_and_heatmaps",
        "model": str(args.model) if args.model else "params.yaml base architecture, fresh weights",
        "input_side": input_side, "upload_side": args.upload_side, "layers": len(layers), "method": METHOD,
        "uploads_timed": len(later),
        "first_upload_seconds": round(first["total"], 3),
        "median_seconds": round(median["total"], 3),
        "median_verdict_seconds": round(median["verdict"], 3),
        "median_picture_seconds": round(median["picture"], 3),
        "goal_seconds": GOAL_SECONDS,
        "ratio_to_goal": round(median["total"] / GOAL_SECONDS, 3),
        "meets_goal": bool(median["total"] <= GOAL_SECONDS),
    }))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
