"""fakelib.regions: the FFHQ face-region template, region shares of heatmaps, and the "where to look" ranking."""

from __future__ import annotations

import numpy as np
import pytest

from fakelib import overlay, regions


def _at(size: int, x: float, y: float) -> str:
    """Region name of the pixel at fractions (x, y) of the side."""
    return regions.REGIONS[regions.region_map(size)[int(y * size), int(x * size)]]


@pytest.mark.parametrize("size", [32, 37, 64, 256])
def test_template_labels_every_pixel_with_exactly_one_region(size):
    labels = regions.region_map(size)
    assert labels.shape == (size, size)
    assert labels.min() >= 0 and labels.max() < len(regions.REGIONS)
    masks = regions.region_masks(size)
    np.testing.assert_array_equal(sum(mask.astype(int) for mask in masks.values()), 1)
    assert all(mask.any() for mask in masks.values()), "every region is present at this size"


def test_template_scales_with_the_image_side():
    small, large = regions.area_shares(48), regions.area_shares(512)
    np.testing.assert_allclose(small, large, atol=0.02)
    assert small.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("size", [48, 128])
def test_landmarks_fall_in_their_regions(size):
    assert _at(size, *regions.LANDMARKS["left_eye"]) == "eyes"
    assert _at(size, *regions.LANDMARKS["right_eye"]) == "eyes"
    assert _at(size, 0.5, 0.59) == "nose"
    assert _at(size, *regions.LANDMARKS["mouth"]) == "mouth_teeth"
    assert _at(size, 0.37, 0.415) == "brows"
    assert _at(size, 0.5, 0.15) == "hair"
    assert _at(size, 0.5, 0.88) == "face_outline_jaw"
    assert _at(size, 0.35, 0.62) == "skin"
    assert _at(size, 0.24, 0.54) == "ears"
    assert _at(size, 0.03, 0.03) == "background"


def test_region_shares_sum_to_one_and_zero_maps_point_nowhere():
    rng = np.random.default_rng(0)
    maps = rng.random((5, 40, 40))
    maps[2] = 0.0
    shares = regions.region_shares(maps)
    assert shares.shape == (5, len(regions.REGIONS))
    np.testing.assert_allclose(np.delete(shares, 2, axis=0).sum(axis=1), 1.0)
    assert np.isnan(shares[2]).all()
    single = regions.region_shares(maps[0])
    np.testing.assert_allclose(single, shares[0])
    with pytest.raises(ValueError, match="non-negative"):
        regions.region_shares(-maps)


def test_a_map_on_the_eyes_gives_the_eyes_all_the_mass():
    heatmap = regions.region_masks(64)["eyes"].astype(float)
    shares = dict(zip(regions.REGIONS, regions.region_shares(heatmap)))
    assert shares["eyes"] == pytest.approx(1.0)


def test_demo_artifact_masks_land_in_the_matching_regions():
    """The template and fakelib.demo share one geometry: iris artifacts fall in the eyes, teeth ones in the mouth."""
    from fakelib.demo import render_face

    checked = set()
    for seed in range(200):
        _, mask, kinds = render_face(np.random.default_rng(seed), 64, True, 1.0)
        if not set(kinds) <= {"iris_mismatch", "teeth_smear"}:
            continue
        shares = dict(zip(regions.REGIONS, regions.region_shares(mask.astype(float))))
        assert shares["eyes"] + shares["mouth_teeth"] > 0.9, kinds
        if "teeth_smear" in kinds:
            assert shares["mouth_teeth"] > 0.3, kinds
        if "iris_mismatch" in kinds:
            assert shares["eyes"] > 0.05, kinds
        checked.update(kinds)
        if checked == {"iris_mismatch", "teeth_smear"}:
            return
    pytest.fail(f"no demo fake with only iris or teeth artifacts in 200 seeds (saw {checked})")


def test_shares_frame_is_long_and_sums_to_one_per_image_and_layer():
    rng = np.random.default_rng(1)
    heatmaps = {"conv1": rng.random((3, 32, 32)), "conv2": rng.random((3, 32, 32))}
    frame = regions.shares_frame(heatmaps, image_ids=["a", "b", "c"])
    assert list(frame.columns) == ["image", "layer", "region", "share"]
    assert len(frame) == 2 * 3 * len(regions.REGIONS)
    np.testing.assert_allclose(frame.groupby(["image", "layer"])["share"].sum(), 1.0)


def _hot(region: str, count: int, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(2)
    maps = 0.05 * rng.random((count, size, size))
    maps[:, regions.region_masks(size)[region]] += 1.0
    return maps


def test_where_to_look_ranks_the_hot_region_first_per_layer_and_overall():
    heatmaps = {"conv1": _hot("mouth_teeth", 4), "conv2": _hot("mouth_teeth", 4)}
    selection = np.array([True, True, True, False])
    ranking = regions.where_to_look(heatmaps, selection)
    assert set(ranking["layer"]) == {"conv1", "conv2", "overall"}
    firsts = ranking[ranking["rank"] == 1]
    assert set(firsts["region"]) == {"mouth_teeth"}
    assert set(ranking["n_images"]) == {3}
    overall = ranking[ranking["layer"] == "overall"]
    assert overall["share"].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(overall["lift"], overall["share"] / overall["area"])
    assert regions.advice(ranking).startswith("Look first at the mouth and teeth, then")


def test_ranking_by_share_favours_large_regions_and_lift_small_hot_ones():
    maps = np.full((2, 48, 48), 0.2)
    maps[:, regions.region_masks(48)["eyes"]] = 1.0
    by_lift = regions.where_to_look({"conv1": maps}, rank_by="lift")
    by_share = regions.where_to_look({"conv1": maps}, rank_by="share")
    assert by_lift.iloc[0]["region"] == "eyes"
    assert by_share.iloc[0]["region"] == "background"
    with pytest.raises(ValueError, match="rank_by"):
        regions.where_to_look({"conv1": maps}, rank_by="area")


def test_no_caught_fake_gives_an_empty_ranking_and_honest_advice():
    maps = _hot("hair", 3)
    caught = regions.caught_fakes(np.array([1, 0, 1]), np.array([0.2, 0.9, 0.4]))
    assert not caught.any()
    ranking = regions.where_to_look({"conv1": maps}, caught)
    assert ranking["share"].isna().all() and set(ranking["n_images"]) == {0}
    assert regions.advice(ranking).startswith("No caught fake")


def test_caught_fakes_needs_a_fake_label_and_a_high_probability():
    caught = regions.caught_fakes(np.array([1, 1, 0, 1]), np.array([0.9, 0.3, 0.95, 0.5]), threshold=0.5)
    np.testing.assert_array_equal(caught, [True, False, False, True])


def test_bar_chart_and_template_figure_are_written(tmp_path):
    ranking = regions.where_to_look({"conv1": _hot("eyes", 2), "conv2": _hot("nose", 2)})
    figure = overlay.plot_where_to_look(ranking, path=tmp_path / "reports" / "where_to_look.png")
    assert len(figure.axes) == 3
    assert [label.get_text() for label in figure.axes[0].get_yticklabels()][-1] == "eyes"
    assert (tmp_path / "reports" / "where_to_look.png").read_bytes()[:4] == b"\x89PNG"
    overlay.plot_region_template(regions.region_map(64), regions.REGIONS, path=tmp_path / "template.png")
    assert (tmp_path / "template.png").is_file()
