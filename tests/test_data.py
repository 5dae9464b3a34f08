"""fakelib.data and fakelib.images: discovery, conversions, skipped-file report, cache reuse, tf.data pipeline."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakelib import data as datalib
from fakelib import images as imagelib
from fakelib.config import AugmentConfig, DataConfig
from fakelib.layout import LABELS


def _save(path: Path, image: Image.Image, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)


def _rgb(seed: int, size: int = 40) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


@pytest.fixture()
def messy_dataset(tmp_path: Path) -> Path:
    """Mixed case class folders, nested folders, every Pillow mode, and broken files."""
    root = tmp_path / "messy"
    for index in range(12):
        _save(root / "REAL" / "batch1" / f"r{index}.jpg", _rgb(index), quality=90)
        _save(root / "Fake" / f"f{index}.png", _rgb(100 + index))
    gray = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 40), dtype=np.uint8))
    _save(root / "REAL" / "gray.png", gray)
    _save(root / "REAL" / "rgba.png", _rgb(2).convert("RGBA"))
    _save(root / "REAL" / "palette.png", _rgb(3).convert("P"))
    _save(root / "REAL" / "cmyk.jpg", _rgb(4).convert("CMYK"))
    sixteen = Image.fromarray((np.arange(1600).reshape(40, 40) * 40).astype(np.uint16))
    _save(root / "Fake" / "deep16.png", sixteen)
    (root / "Fake" / "empty.jpg").write_bytes(b"")
    (root / "Fake" / "notes.png").write_text("not an image")
    jpeg = io.BytesIO()
    _rgb(5).save(jpeg, format="JPEG")
    (root / "Fake" / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    _save(root / "Fake" / "thumb.png", _rgb(6, size=12))
    (root / "Fake" / "readme.txt").write_text("ignored: not an image suffix")
    return root


def test_discovery_conversion_and_skip_report(messy_dataset, tmp_path):
    prepared = datalib.load_dataset(DataConfig(data_dir=str(messy_dataset), image_size=32), tmp_path / "cache")
    assert prepared.images.shape == (12 + 4 + 12 + 1, 32, 32, 3)
    assert prepared.images.dtype == np.uint8
    assert (prepared.labels == 0).sum() == 16 and (prepared.labels == 1).sum() == 13
    reasons = {Path(item["path"]).name: item["reason"].split(":")[0] for item in prepared.report["skipped"]}
    assert reasons == {"empty.jpg": "empty", "notes.png": "not_image", "truncated.jpg": "truncated",
                       "thumb.png": "too_small"}
    assert set(prepared.splits) <= {"train", "val", "test"}


def test_every_pillow_mode_becomes_rgb_uint8():
    for mode in ("L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1"):
        image = _rgb(7).convert("L").convert(mode) if mode in ("I;16", "I", "F", "1") else _rgb(7).convert(mode)
        buffer = io.BytesIO()
        image.save(buffer, format="TIFF")
        array = imagelib.load_array(buffer.getvalue(), size=16)
        assert array.shape == (16, 16, 3) and array.dtype == np.uint8, mode


def test_decompression_bomb_is_refused():
    buffer = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buffer, format="PNG")
    with pytest.raises(imagelib.ImageError) as error:
        imagelib.open_image(buffer.getvalue(), max_pixels=1_000_000)
    assert error.value.reason == "too_many_pixels"


def test_class_without_usable_image_is_one_line(tmp_path):
    root = tmp_path / "broken"
    for index in range(3):
        _save(root / "real" / f"{index}.png", _rgb(index))
    (root / "fake").mkdir()
    (root / "fake" / "x.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="no usable fake image") as error:
        datalib.load_dataset(DataConfig(data_dir=str(root), image_size=32), tmp_path / "cache")
    assert "\n" not in str(error.value)


def test_missing_class_folder_is_one_line(tmp_path):
    (tmp_path / "only" / "real").mkdir(parents=True)
    with pytest.raises(ValueError, match="no fake/ folder"):
        datalib.load_dataset(DataConfig(data_dir=str(tmp_path / "only"), image_size=32), tmp_path / "cache")


def test_manifest_split_is_used(messy_dataset, tmp_path):
    with (messy_dataset / "manifest.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["relpath", "label", "split"])
        for index in range(12):
            writer.writerow([f"REAL/batch1/r{index}.jpg", "real", "test"])
    prepared = datalib.load_dataset(DataConfig(data_dir=str(messy_dataset), image_size=32), tmp_path / "cache")
    assert prepared.report["split_source"] == "manifest"
    listed = [split for relpath, split in zip(prepared.relpaths, prepared.splits) if "batch1" in relpath]
    assert listed == ["test"] * 12


def test_train_fraction_keeps_a_stable_nested_share_of_training_and_every_validation_and_test_image(tmp_path):
    from fakelib.demo import generate

    folder = tmp_path / "faces"
    generate(folder, count=200, size=32, seed=1, strength=1.0, workers=1)
    full = datalib.load_dataset(DataConfig(data_dir=str(folder), image_size=32), tmp_path / "cache")
    half, quarter = (datalib.load_dataset(DataConfig(data_dir=str(folder), image_size=32, train_fraction=fraction),
                                          tmp_path / "cache") for fraction in (0.5, 0.25))
    kept = {name: set(data.relpaths[data.splits == "train"]) for name, data in
            (("full", full), ("half", half), ("quarter", quarter))}
    assert quarter.report["per_split"]["train"] == {
        name: int(((quarter.splits == "train") & (quarter.labels == label)).sum()) for name, label in LABELS.items()}
    assert kept["quarter"] < kept["half"] < kept["full"]  # nested: a smaller share is a subset of a larger one
    assert 0.35 < len(kept["half"]) / len(kept["full"]) < 0.65 and half.report["train_fraction"] == 0.5
    assert half.report["n_unused_train"] == len(kept["full"]) - len(kept["half"])
    assert set(np.unique(half.splits)) == {"train", "val", "test", "unused"}
    for split in ("val", "test"):  # untouched, in the same order
        np.testing.assert_array_equal(half.relpaths[half.splits == split], full.relpaths[full.splits == split])
        assert half.report["per_split"][split] == full.report["per_split"][split]
    images, labels = half.subset("train")
    assert len(labels) == len(kept["half"]) and set(np.unique(labels)) == {0, 1}


def test_hash_split_is_deterministic_and_close_to_ratios():
    digests = [imagelib.sha256_bytes(str(index).encode()) for index in range(4000)]
    splits = [datalib.hash_split(digest, 0.15, 0.15) for digest in digests]
    assert splits == [datalib.hash_split(digest, 0.15, 0.15) for digest in digests]
    assert abs(splits.count("test") / 4000 - 0.15) < 0.03
    assert abs(splits.count("val") / 4000 - 0.15) < 0.03


def test_cache_is_reused_and_rebuilt_when_size_or_files_change(messy_dataset, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = datalib.load_dataset(DataConfig(data_dir=str(messy_dataset), image_size=32), cache)
    calls = []
    original = datalib._decode
    monkeypatch.setattr(datalib, "_decode", lambda *args: calls.append(args) or original(*args))
    again = datalib.load_dataset(DataConfig(data_dir=str(messy_dataset), image_size=32), cache)
    assert calls == [] and again.cache_dir == first.cache_dir
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(first.images))
    bigger = datalib.load_dataset(DataConfig(data_dir=str(messy_dataset), image_size=36), cache)
    assert bigger.cache_dir != first.cache_dir and bigger.images.shape[1] == 36
    _save(messy_dataset / "Fake" / "new.png", _rgb(999))
    changed = datalib.load_dataset(DataConfig(data_dir=str(messy_dataset), image_size=32), cache)
    assert changed.cache_dir != first.cache_dir and len(changed.labels) == len(first.labels) + 1


def test_equalize_reencodes_every_image(messy_dataset, tmp_path):
    plain = datalib.load_dataset(DataConfig(data_dir=str(messy_dataset), image_size=32), tmp_path / "c")
    equal = datalib.load_dataset(DataConfig(data_dir=str(messy_dataset), image_size=32, equalize_quality=50),
                                 tmp_path / "c")
    assert plain.cache_dir != equal.cache_dir
    index = int(np.flatnonzero(plain.labels == 1)[0])
    difference = np.abs(plain.images[index].astype(int) - equal.images[index].astype(int)).mean()
    assert difference > 1.0  # quality 50 visibly changes random noise


def test_pipeline_batches_shapes_and_is_reproducible():
    images = np.random.default_rng(0).integers(0, 255, (50, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(50) % 2
    augment = AugmentConfig(flip=0.5, crop=0.2, color_jitter=0.2, blur_prob=0.5, jpeg_prob=0.5)
    first = list(datalib.make_dataset(images, labels, 16, augment, shuffle=True, seed=3).as_numpy_iterator())
    second = list(datalib.make_dataset(images, labels, 16, augment, shuffle=True, seed=3).as_numpy_iterator())
    assert [batch[0].shape for batch in first] == [(16, 32, 32, 3)] * 3 + [(2, 32, 32, 3)]
    for (pixels_a, labels_a), (pixels_b, labels_b) in zip(first, second):
        np.testing.assert_allclose(pixels_a, pixels_b, atol=1e-4)
        np.testing.assert_array_equal(labels_a, labels_b)
    pixels = np.concatenate([batch[0] for batch in first])
    assert pixels.dtype == np.float32 and pixels.min() >= 0 and pixels.max() <= 255
    assert sorted(np.concatenate([batch[1] for batch in first]).tolist()) == sorted(labels.astype(float).tolist())


def test_pipeline_without_augmentation_returns_exact_pixels_in_order():
    images = np.random.default_rng(1).integers(0, 255, (10, 32, 32, 3), dtype=np.uint8)
    batches = list(datalib.make_dataset(images, np.zeros(10), 4).as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([batch[0] for batch in batches]), images.astype(np.float32))


def test_pipeline_runs_without_the_autotuner_whose_thread_stalls_each_new_epoch():
    images = np.random.default_rng(1).integers(0, 255, (10, 32, 32, 3), dtype=np.uint8)
    dataset = datalib.make_dataset(images, np.arange(10) % 2, 4, AugmentConfig(), shuffle=True)
    assert dataset.options().autotune.enabled is False
    epochs = [np.concatenate([batch[1] for batch in dataset.as_numpy_iterator()]) for _ in range(2)]
    assert [sorted(labels.tolist()) for labels in epochs] == [sorted((np.arange(10) % 2).tolist())] * 2


def test_each_augmentation_changes_pixels():
    images = np.random.default_rng(2).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    import tensorflow as tf

    from fakelib import augment as augmentlib

    for name, augment in {
        "flip": AugmentConfig.off(flip=1.0),
        "crop": AugmentConfig.off(crop=0.4),
        "jitter": AugmentConfig.off(color_jitter=0.5),
        "erase": AugmentConfig.off(erase=1.0),
    }.items():
        out = datalib.augment_batch(tf.constant(images), tf.constant([1, 2], tf.int64), augment).numpy()
        assert out.shape == images.shape, name
        assert np.abs(out - images).mean() > 1.0, name
    for name, augment in {
        "blur": AugmentConfig.off(blur_prob=1.0),
        "jpeg": AugmentConfig.off(jpeg_prob=1.0),
        "sharpen": AugmentConfig.off(sharpen_prob=1.0),
        "noise": AugmentConfig.off(noise_prob=1.0),
    }.items():
        out = augmentlib.degrade_batch(images, np.full(8, 32), augment, (1, 2))
        assert out.shape == images.shape and out.dtype == np.uint8, name
        assert np.abs(out.astype(float) - images).mean() > 1.0, name
    flipped = datalib.augment_batch(tf.constant(images), tf.constant([1, 2], tf.int64),
                                    AugmentConfig.off(flip=1.0))
    np.testing.assert_array_equal(flipped.numpy(), images[:, :, ::-1].astype(np.float32))


def test_random_erasing_fills_one_even_aligned_grey_rectangle_per_chosen_image():
    import tensorflow as tf

    from fakelib.images import PAD_VALUE

    images = np.random.default_rng(3).integers(0, 100, (64, 32, 32, 3), dtype=np.uint8)  # never the grey itself
    out = datalib.augment_batch(tf.constant(images), tf.constant([4, 5], tf.int64), AugmentConfig.off(erase=0.5)).numpy()
    erased = out == PAD_VALUE
    np.testing.assert_array_equal(out[~erased], images[~erased])
    assert (erased.all(axis=3) == erased.any(axis=3)).all()  # whole pixels, every channel
    chosen = 0
    for mask in erased[..., 0]:
        if not mask.any():
            continue
        chosen += 1
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        assert mask.sum() == len(rows) * len(cols)  # one solid rectangle
        assert rows[0] % 2 == 0 and cols[0] % 2 == 0 and len(rows) % 2 == 0 and len(cols) % 2 == 0
        assert 0.01 <= mask.mean() <= 0.3
    assert 16 <= chosen <= 48  # about half of 64
    again = datalib.augment_batch(tf.constant(images), tf.constant([4, 5], tf.int64), AugmentConfig.off(erase=0.5))
    np.testing.assert_array_equal(again.numpy(), out)


def test_mixup_blends_each_image_and_its_label_with_the_mirrored_one_by_the_same_weight(tmp_path):
    import tensorflow as tf

    rng = np.random.default_rng(5)
    images = rng.uniform(0, 255, (64, 4, 4, 3)).astype(np.float32)
    labels = (np.arange(64) < 32).astype(np.float32)  # the mirrored partner always has the other label
    out, mixed = (value.numpy() for value in datalib.mix_batch(tf.constant(images), tf.constant(labels),
                                                                tf.constant([7, 8], tf.int64), 0.2))
    weight = np.where(labels == 1, mixed, 1 - mixed)  # the weight of each image's own label
    np.testing.assert_allclose(out, weight[:, None, None, None] * images
                               + (1 - weight[:, None, None, None]) * images[::-1], rtol=1e-4, atol=1e-3)
    assert ((0 <= mixed) & (mixed <= 1)).all()
    near = np.minimum(weight, 1 - weight) < 0.1  # Beta(0.2, 0.2): most blends stay close to one image
    assert 0.4 < near.mean() < 0.95
    again = datalib.mix_batch(tf.constant(images), tf.constant(labels), tf.constant([7, 8], tf.int64), 0.2)[1]
    np.testing.assert_array_equal(again.numpy(), mixed)
    # in the training pipeline: mixed labels when on, the labels themselves when off
    batches = {alpha: next(iter(datalib.make_dataset(np.zeros((32, 8, 8, 3), np.uint8), labels[16:48].astype(int), 32,
                                                     AugmentConfig.off(mixup=alpha), seed=1)))[1].numpy()
               for alpha in (0.0, 0.2)}
    np.testing.assert_array_equal(batches[0.0], labels[16:48])
    assert ((batches[0.2] > 0) & (batches[0.2] < 1)).any()


def test_rescale_shrinks_the_image_and_pads_it_like_inference():
    from fakelib import augment as augmentlib

    images = np.random.default_rng(3).integers(0, 255, (6, 64, 64, 3), dtype=np.uint8)
    augment = AugmentConfig.off(rescale_prob=1.0, rescale_min=0.5)
    out = augmentlib.degrade_batch(images, np.full(6, 64), augment, (4, 5))
    padding = (out == imagelib.PAD_VALUE).all(axis=-1)  # (6, 64, 64)
    assert padding.mean() > 0.2  # factors in [0.5, 1] leave about 40% of the canvas as padding
    assert padding[:, -1].all(axis=-1).sum() >= 3  # the frame is padding wherever the face shrank by 2+ px
    assert not padding[:, 16:48, 16:48].any()  # the centre is always the face
    again = augmentlib.degrade_batch(images, np.full(6, 64), augment, (4, 5))
    np.testing.assert_array_equal(out, again)  # same seed, same batch


def test_degrade_works_on_the_image_not_its_padding():
    from fakelib import augment as augmentlib

    small = np.random.default_rng(4).integers(0, 255, (20, 20, 3), dtype=np.uint8)
    padded = imagelib.pad_square(small, 32)
    augment = AugmentConfig.off(blur_prob=1.0)
    out = augmentlib.degrade_batch(padded[None], np.array([20]), augment, (0, 1))[0]
    offset = imagelib.pad_offset(20, 32)
    assert (out[_outside(20, 32)] == imagelib.PAD_VALUE).all()  # the blur did not smear the face into the padding
    assert np.abs(out[offset:offset + 20, offset:offset + 20].astype(float) - small).mean() > 1.0


def _padded_batch(sides: list[int], size: int = 64, seed: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([imagelib.pad_square(rng.integers(0, 255, (side, side, 3), dtype=np.uint8), size)
                     for side in sides])


def test_size_matching_shrinks_large_faces_of_both_classes_alike_and_reprocesses_small_ones():
    from fakelib import augment as augmentlib

    # Reals: half small (40 px) like an extra folder of thumbnails, half 64 px; fakes: all 64 px.
    labels = np.array([0] * 400 + [1] * 400)
    sides = np.array([40] * 200 + [64] * 200 + [64] * 400)
    limits = augmentlib.SizeMatcher(labels, sides, 1.0).limits(sides, np.random.default_rng(0))
    after = np.where(limits > 0, limits, sides)
    large_reals, fakes, small_reals = slice(200, 400), slice(400, 800), slice(0, 200)
    shrunk = [(limits[group] > 0).mean() for group in (large_reals, fakes)]
    assert abs(shrunk[0] - 0.5) < 0.1 and abs(shrunk[1] - 0.5) < 0.1  # as often as the reals are small
    assert (limits[small_reals] > 0).all() and (limits[small_reals] < 40).all()  # re-processed by us as well
    low, high = max(imagelib.MIN_SIDE, int(40 * augmentlib.RESAVE_SCALE[0])), int(40 * augmentlib.RESAVE_SCALE[1])
    small = after < 64
    assert ((after[small] >= low) & (after[small] <= high)).all()  # every small image ends at the same sides
    means = [after[group][small[group]].mean() for group in (small_reals, large_reals, fakes)]
    assert max(means) - min(means) < 1.0
    assert (augmentlib.SizeMatcher(labels, sides, 0.0).limits(sides, np.random.default_rng(0)) == 0).all()
    same = np.full(800, 64)
    assert (augmentlib.SizeMatcher(labels, same, 1.0).limits(same, np.random.default_rng(0)) == 0).all()


def _outside(side: int, size: int = 64) -> np.ndarray:
    """(size, size) mask of the padding around a centred `side` image (`fakelib.images.pad_square`'s offset)."""
    offset = imagelib.pad_offset(side, size)
    outside = np.ones((size, size), bool)
    outside[offset:offset + side, offset:offset + side] = False
    return outside


def test_matched_fakes_are_downscaled_resaved_and_padded_like_small_reals():
    from fakelib import augment as augmentlib

    labels = np.array([0, 0, 1, 1, 1, 1])
    sides = np.array([40, 40, 64, 64, 64, 64])
    images = _padded_batch(list(sides))
    matched, new_sides = augmentlib.match_split(images, labels, sides, 1.0, seed=0)
    # The reals are all small, so every fake went down to a 40 px side; fakes and small reals alike then went on
    # down to 32-38 px and were saved again.
    assert ((new_sides >= 32) & (new_sides <= 38)).all()
    for image, original, side in zip(matched, images, new_sides):
        assert (image[_outside(int(side))] == imagelib.PAD_VALUE).all()  # padded like a small photo at inference
        assert not np.array_equal(image, original)
    again, _ = augmentlib.match_split(images, labels, sides, 1.0, seed=0)
    np.testing.assert_array_equal(matched, again)  # the validation split is matched the same way every run
    augment = AugmentConfig.off(match_sizes=1.0)
    limits = np.array([0, 0, 40, 40, 0, 0])
    out = augmentlib.degrade_batch(images, sides, augment, (1, 2), limits=limits)
    np.testing.assert_array_equal(out[[0, 1, 4, 5]], images[[0, 1, 4, 5]])  # no limit, no other step: unchanged
    assert (out[2:4][:, _outside(40)] == imagelib.PAD_VALUE).all()


def test_training_pipeline_matches_sizes_across_classes():
    labels = np.array([0] * 8 + [1] * 8)
    sides = np.array([40] * 8 + [64] * 8)
    images = _padded_batch(list(sides))
    augment = AugmentConfig.off(match_sizes=1.0)
    batches = list(datalib.make_dataset(images, labels, 16, augment, seed=0, sides=sides))
    pixels, batch_labels = batches[0][0].numpy(), batches[0][1].numpy()
    corner = (pixels[:, :4, :4] == imagelib.PAD_VALUE).all(axis=(1, 2, 3))  # padded frame: a 40 px image
    assert corner[batch_labels == 1].all() and corner[batch_labels == 0].all()


def test_view_never_upsamples_a_small_image():
    small = Image.fromarray(np.random.default_rng(5).integers(0, 255, (24, 30, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    view, side = imagelib.load_view(buffer.getvalue(), 64)
    assert view.shape == (64, 64, 3) and side == 24
    offset = imagelib.pad_offset(24, 64)
    assert offset % 2 == 0  # the 2 x 2 grid of the image stays aligned with the model's
    np.testing.assert_array_equal(view[offset:offset + 24, offset:offset + 24], np.asarray(small)[:, 3:27])
    assert (view[:offset] == imagelib.PAD_VALUE).all()


def test_view_downsamples_a_large_image_with_an_area_filter():
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)  # finest possible pattern
    buffer = io.BytesIO()
    Image.fromarray(np.stack([checker] * 3, axis=-1)).save(buffer, format="PNG")
    view, side = imagelib.load_view(buffer.getvalue(), 32)
    assert side == 32
    # An anti-aliased 2x down-sample averages each 2 x 2 block to flat grey; nearest or plain bilinear would alias.
    assert np.abs(view.astype(float) - 127.5).max() < 1.0


def test_several_folders_are_one_dataset(messy_dataset, tmp_path):
    extra = tmp_path / "extra"
    for index in range(5):
        _save(extra / "real" / f"x{index}.jpg", _rgb(200 + index, size=36), quality=80)
    config = DataConfig(data_dir=[str(messy_dataset), str(extra)], image_size=48)
    prepared = datalib.load_dataset(config, cache_root=tmp_path / "cache")
    alone = datalib.load_dataset(DataConfig(data_dir=str(messy_dataset), image_size=48), cache_root=tmp_path / "cache")
    assert len(prepared.labels) == len(alone.labels) + 5
    assert (prepared.labels[-5:] == 0).all()
    assert sorted(prepared.sides[-5:].tolist()) == [36] * 5  # small photos keep their own side, padded
    assert prepared.report["n_real"] == alone.report["n_real"] + 5
    assert any(relpath.startswith("extra/") for relpath in prepared.relpaths)
    # Only the folder holding both classes counts as paired (where probabilities are calibrated).
    assert prepared.paired[:-5].all() and not prepared.paired[-5:].any()
    assert alone.paired is None and alone.paired_mask("train").all()
    # each image's group, the source a threshold keeps the reals of: folder name first when there are several
    groups = prepared.split_groups("train")
    train_relpaths = prepared.relpaths[prepared.splits == "train"]
    assert all(group == "extra/real" if relpath.startswith("extra/") else group.startswith(f"{messy_dataset.name}/")
               for group, relpath in zip(groups, train_relpaths))
    assert "extra/real" in set(groups) and f"{messy_dataset.name}/REAL/batch1" in set(groups)  # its subfolder
    assert not any(group.startswith(f"{messy_dataset.name}/") for group in alone.split_groups("train"))
    np.testing.assert_array_equal(datalib.groups_of(["real/lfw/a.jpg", "fake/b.png"], several=False),
                                  ["real/lfw", "fake"])
    np.testing.assert_array_equal(datalib.groups_of(["extra/real/lfw/a.jpg"], several=True), ["extra/real/lfw"])
    with pytest.raises(ValueError, match="no usable fake"):
        datalib.load_dataset(DataConfig(data_dir=[str(extra), str(extra)], image_size=48),
                             cache_root=tmp_path / "cache")


def test_cache_of_a_folder_outside_the_repository_goes_to_the_user_cache(monkeypatch, tmp_path):
    from fakelib import paths

    monkeypatch.delenv("FAKELIB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datalib.default_cache_root(tmp_path / "faces") == tmp_path / "xdg" / "fakelib"
    assert datalib.default_cache_root(paths.ROOT / "data" / "demo") == paths.CACHE
    monkeypatch.setenv("FAKELIB_CACHE", str(tmp_path / "mine"))
    assert datalib.default_cache_root(tmp_path / "faces") == tmp_path / "mine"


def test_calibration_is_fitted_on_the_folders_holding_both_classes(messy_dataset, tmp_path):
    from fakelib.config import ExperimentConfig
    from fakelib.train import _splits

    extra = tmp_path / "extra"
    for index in range(40):
        _save(extra / "real" / f"x{index}.jpg", _rgb(100 + index, size=48), quality=80)
    prepared = datalib.load_dataset(DataConfig(data_dir=[str(messy_dataset), str(extra)], image_size=48),
                                    cache_root=tmp_path / "cache")
    config = ExperimentConfig()
    splits, _, (images, labels) = _splits(prepared, config)
    val_paired = prepared.paired_mask("val")
    assert 0 < val_paired.sum() < len(val_paired)  # both folders have validation images
    assert len(labels) == val_paired.sum() and len(np.unique(labels)) == 2
    np.testing.assert_array_equal(labels, splits["val"][1][val_paired])
    # Where no folder holds both classes, all of validation calibrates.
    prepared.paired[:] = False
    _, _, (_, labels) = _splits(prepared, config)
    assert len(labels) == len(splits["val"][1])
