"""Benchmark: Grad-CAM for every conv layer in one pass (fakelib.explain) against tf-keras-vis called once per layer.

Prints one JSON object. Times are medians over interleaved repeats on the same batch, and the headline figure is
the ratio `speedup` (peer / ours), measured in the same run: absolute times on a shared 2-core machine are noise.
The model is `create_model("cnn", 128, conv_filters=BENCH_FILTERS)` (other keys: ModelConfig's defaults); the batch is 32 demo faces.
The peer explains the logit (tf-keras-vis's recommended `ReplaceToLinear`) so its maps are the reference our maps
must match within 1e-4.

    .venv/bin/python benchmarks/bench_explain.py [--size 128] [--batch 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

BENCH_FILTERS = (16, 32, 64, 128)  # the 4-block CNN every earlier run of this benchmark measured


def demo_batch(size: int, batch: int, seed: int) -> np.ndarray:
    """(batch, size, size, 3) uint8: half real, half fake demo faces."""
    from fakelib.demo import render_face

    return np.stack([render_face(np.random.default_rng([seed, index]), size, index % 2 == 1, 1.0)[0]
                     for index in range(batch)])


def timed(function) -> tuple[float, object]:
    started = time.perf_counter()
    value = function()
    return time.perf_counter() - started, value


def main() -> None:
    from fakelib.quiet import tensorflow_environment

    tensorflow_environment()  # before TensorFlow loads: oneDNN on where TensorFlow leaves it off
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import keras
    import tensorflow as tf
    import tf_keras_vis
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

    from fakelib import explain
    from fakelib.models import conv_layer_names, create_model

    keras.utils.set_random_seed(args.seed)
    model = create_model("cnn", args.size, conv_filters=BENCH_FILTERS)
    layers = conv_layer_names(model)
    images = demo_batch(args.size, args.batch, args.seed)
    peer = Gradcam(model, model_modifier=ReplaceToLinear(), clone=True)
    pixels = images.astype(np.float32)

    def ours():
        return explain.compute_cams(model, images, "gradcam", batch_size=args.batch)

    def ours_per_layer():
        return explain.compute_cams_per_layer(model, images, "gradcam")

    def theirs():
        return {layer: peer(lambda output: output[:, 0], pixels, penultimate_layer=layer) for layer in layers}

    functions = {"ours": ours, "ours_per_layer": ours_per_layer, "tf_keras_vis": theirs}
    results = {name: function() for name, function in functions.items()}  # warm-up: tracing, first calls
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(args.repeats):  # interleaved, so load from other processes hits all three alike
        for name, function in functions.items():
            seconds, results[name] = timed(function)
            times[name].append(seconds)

    ms_per_image = {name: 1000 * statistics.median(values) / args.batch for name, values in times.items()}
    reference = results["tf_keras_vis"]
    difference = {layer: float(np.max(np.abs(results["ours"].heatmaps[layer] - reference[layer])))
                  for layer in layers}
    speedup = ms_per_image["tf_keras_vis"] / ms_per_image["ours"]
    print(json.dumps({
        "benchmark": "explain_all_conv_layers",
        "model": f"create_model('cnn', {args.size}, conv_filters={list(BENCH_FILTERS)})",
        "layers": layers, "image_size": args.size, "batch": args.batch, "repeats": args.repeats,
        "method": "gradcam",
        "ms_per_image_one_pass": round(ms_per_image["ours"], 3),
        "ms_per_image_ours_per_layer": round(ms_per_image["ours_per_layer"], 3),
        "ms_per_image_tf_keras_vis_per_layer": round(ms_per_image["tf_keras_vis"], 3),
        "speedup_vs_tf_keras_vis": round(speedup, 2),
        "speedup_vs_ours_per_layer": round(ms_per_image["ours_per_layer"] / ms_per_image["ours"], 2),
        "goal_speedup": 3.0, "meets_speed_goal": bool(speedup >= 3.0),
        "max_abs_difference_per_layer": {layer: float(f"{value:.3g}") for layer, value in difference.items()},
        "tolerance": 1e-4, "within_tolerance": bool(max(difference.values()) <= 1e-4),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "tf_keras_vis": tf_keras_vis.__version__},
    }))


if __name__ == "__main__":
    main()
