"""Training throughput through the real input pipeline against an in-memory bound, and prepared-cache reuse.

Prints one JSON object:
- `pipeline_images_per_s`: the default model (params.yaml base) trained from the memory-mapped uint8 cache
  through `fakelib.data.make_dataset` with the default augmentation;
- `bound_images_per_s`: the same model fed one pre-made float32 batch from memory (no input work at all);
- `pipeline_over_bound` (goal >= 0.9);
- `first_decode_s` vs `cache_load_s` (a second experiment opening the prepared cache and touching every
  pixel) and their ratio (goal >= 10);
- `epochs`: whole epochs, each with its own iterator as in `fakelib.train`, through the library's pipeline
  (tf.data's model-based autotuner off) and through the same pipeline with the autotuner on: seconds per epoch,
  totals and `slowest_over_median` (goal: the library's <= 1.5; the autotuned one paused up to 10 s at the start
  of some epochs, see `fakelib.data.pipeline_options`).
Absolute numbers on a shared 2-core machine are noise; the ratios are measured in the same run.

Usage: python benchmarks/bench_train.py [--count 1024] [--size 128] [--steps 30] [--epochs 8]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path


def _timed_fit(model, dataset, steps: int) -> float:
    """Images per second over `steps` training steps, after one warm-up pass that traces the graph."""
    model.fit(dataset.take(3), epochs=1, verbose=0, shuffle=False)
    started = time.perf_counter()
    model.fit(dataset.take(steps), epochs=1, verbose=0, shuffle=False)
    return time.perf_counter() - started


def _epoch_seconds(model, dataset, epochs: int) -> list[float]:
    """Seconds of each of `epochs` whole epochs, timed from the epoch's start (when Keras replaces the previous
    epoch's iterator) to its end by training's own `epoch_timer`, after one warm-up epoch that traces the graph."""
    from fakelib.train import epoch_timer

    history = model.fit(dataset, epochs=epochs + 1, verbose=0, shuffle=False, callbacks=[epoch_timer()])
    return [round(seconds, 2) for seconds in history.history["epoch_seconds"][1:]]


def _epoch_summary(seconds: list[float]) -> dict:
    import numpy as np

    return {"epoch_s": seconds, "total_s": round(sum(seconds), 2),
            "slowest_over_median": round(max(seconds) / float(np.median(seconds)), 2)}


def main() -> None:
    from fakelib.quiet import tensorflow_environment

    tensorflow_environment()  # before TensorFlow loads: oneDNN on where TensorFlow leaves it off
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1024)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=8, help="whole epochs timed per pipeline (0: skip)")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from fakelib.config import load_params
    from fakelib.data import load_dataset, make_dataset, pipeline_options
    from fakelib.demo import generate
    from fakelib.train import build_and_compile

    work = Path(tempfile.mkdtemp(prefix="bench_train_"))
    generate(work / "demo", count=args.count, size=args.size, seed=0)
    base = load_params().base.replace(data_dir=str(work / "demo"), image_size=args.size)
    data_config = base.data

    started = time.perf_counter()
    prepared = load_dataset(data_config, work / "cache")
    int(np.asarray(prepared.images).sum())
    first_decode = time.perf_counter() - started
    started = time.perf_counter()
    again = load_dataset(data_config, work / "cache")
    int(np.asarray(again.images).sum())
    cache_load = time.perf_counter() - started

    images, labels = prepared.subset("train")
    batch = base.train.batch_size
    steps = min(args.steps, len(labels) // batch)
    pipeline = make_dataset(images, labels, batch, base.augment, shuffle=True, seed=0).repeat()
    bound_batch = (tf.constant(np.asarray(images[:batch], np.float32)), tf.constant(labels[:batch], tf.float32))
    bound = tf.data.Dataset.from_tensors(bound_batch).repeat()

    model = build_and_compile(base, steps)
    pipeline_seconds = _timed_fit(model, pipeline, steps)
    model = build_and_compile(base, steps)
    bound_seconds = _timed_fit(model, bound, steps)
    epochs = {}
    if args.epochs > 0:
        library = make_dataset(images, labels, batch, base.augment, shuffle=True, seed=0)
        autotuned_options = pipeline_options()
        autotuned_options.autotune.enabled = True
        for name, dataset in (("autotuned", library.with_options(autotuned_options)), ("library", library)):
            model = build_and_compile(base, math.ceil(len(labels) / batch))
            epochs[name] = _epoch_summary(_epoch_seconds(model, dataset, args.epochs))
        epochs["autotuned_over_library"] = round(epochs["autotuned"]["total_s"] / epochs["library"]["total_s"], 3)
        epochs["goal_met"] = epochs["library"]["slowest_over_median"] <= 1.5
    pipeline_rate = steps * batch / pipeline_seconds
    bound_rate = steps * batch / bound_seconds
    print(json.dumps({
        "image_size": args.size, "batch_size": batch, "steps": steps, "model": base.model.model,
        "conv_filters": list(base.model.conv_filters),
        "pipeline_images_per_s": round(pipeline_rate, 1),
        "bound_images_per_s": round(bound_rate, 1),
        "pipeline_over_bound": round(pipeline_rate / bound_rate, 3),
        "pipeline_goal_met": pipeline_rate / bound_rate >= 0.9,
        "images_decoded": int(len(prepared.labels)),
        "first_decode_s": round(first_decode, 3),
        "cache_load_s": round(cache_load, 4),
        "cache_speedup": round(first_decode / cache_load, 1),
        "cache_goal_met": first_decode / cache_load >= 10,
        "epochs": epochs,
    }))


if __name__ == "__main__":
    main()
