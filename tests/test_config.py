"""fakelib.config: loading, validation with one-line errors, sweep expansion, stable ids."""

from __future__ import annotations

import pytest
import yaml

from fakelib.config import ConfigError, ExperimentConfig, load_experiment, load_params, parse_params
from fakelib import paths


def test_repository_params_are_valid_and_sweep_is_cartesian():
    params = load_params(paths.PARAMS)
    expected = 1
    for values in params.sweep.values():
        expected *= len(values)
    assert len(params.experiments()) == expected
    assert len({experiment.experiment_id for experiment in params.experiments()}) == expected


def test_sweep_expands_every_combination_over_the_base():
    params = parse_params({"model": {"conv_filters": [8, 16]},
                           "sweep": {"dropout": [0.0, 0.3], "conv_filters": [[8, 16], [8, 16, 32]]}})
    experiments = params.experiments()
    assert len(experiments) == 4
    combos = {(e.model.dropout, e.model.conv_filters) for e in experiments}
    assert combos == {(0.0, (8, 16)), (0.3, (8, 16)), (0.0, (8, 16, 32)), (0.3, (8, 16, 32))}


def test_experiment_id_is_stable_and_ignores_threads():
    first = ExperimentConfig.from_flat({"dropout": 0.2})
    again = ExperimentConfig.from_flat({"dropout": 0.2, "threads": 4})
    other = ExperimentConfig.from_flat({"dropout": 0.25})
    assert first.experiment_id == again.experiment_id
    assert first.experiment_id != other.experiment_id
    assert len(first.experiment_id) == 10


def test_a_setting_added_later_keeps_the_ids_of_experiments_that_do_not_use_it():
    """`train.members` came after these ids were computed (by the version of 2026-12-04, at e935582): at 1 it
    leaves them as they were, so a sweep finished before is not run again; at 2 it is another experiment."""
    assert ExperimentConfig().experiment_id == "eb252d7d3f"
    assert ExperimentConfig.from_flat({"dropout": 0.2}).experiment_id == "1ceeaf9b88"
    assert ExperimentConfig.from_flat({"members": 2}).experiment_id != "eb252d7d3f"
    assert ExperimentConfig.from_flat({"train_fraction": 1}).experiment_id == "eb252d7d3f"  # data.train_fraction too
    assert ExperimentConfig.from_flat({"train_fraction": 0.5}).experiment_id != "eb252d7d3f"
    with pytest.raises(ConfigError,
                       match=r"data.train_fraction = 0.0 is not allowed; expected a number in \(0.0, 1.0\]"):
        ExperimentConfig.from_flat({"train_fraction": 0})


@pytest.mark.parametrize("raw, fragment", [
    ({"model": {"dropout": 1.5}}, "model.dropout = 1.5"),
    ({"train": {"epochs": "ten"}}, "train.epochs = 'ten'"),
    ({"train": {"epochs": True}}, "an integer"),
    ({"model": {"pooling": "median"}}, "one of max, avg, stride"),
    ({"model": {"model": "vgg"}}, "model.model = 'vgg'"),
    ({"model": {"fliters": [1]}}, "unknown parameter model.fliters"),
    ({"model": {"epochs": 3}}, "belongs in section 'train'"),
    ({"sweep": {"dropuot": [0.1]}}, "unknown sweep parameter 'dropuot'"),
    ({"sweep": {"dropout": 0.1}}, "non-empty list"),
    ({"optimiser": {}}, "unknown section"),
    ({"augment": {"jpeg_quality": [90, 50]}}, "augment.jpeg_quality"),
    ({"data": {"image_size": 16}}, "data.image_size = 16"),
    ({"train": {"ema": 1.0}}, "train.ema = 1.0"),
    ({"model": {"conv_filters": [8, 16, 32], "kernel_sizes": [3, 3]}}, "has 2 entries"),
    ({"sweep": {"conv_filters": [[8, 16], [8, 16, 32]]}, "model": {"kernel_sizes": [3, 3]}}, "has 2 entries"),
])
def test_invalid_parameters_fail_with_one_line_naming_the_key(raw, fragment):
    with pytest.raises(ConfigError) as error:
        parse_params(raw)
    message = str(error.value)
    assert fragment in message
    assert "\n" not in message


def test_kernel_sizes_integer_applies_to_every_layer():
    config = ExperimentConfig.from_flat({"conv_filters": [4, 8, 16], "kernel_sizes": 5})
    assert config.model.kernels == (5, 5, 5)
    assert config.model.builder_params()["kernel_sizes"] == [5, 5, 5]


def test_save_and_reload_round_trip(tmp_path):
    config = ExperimentConfig.from_flat({"conv_filters": [4, 8], "kernel_sizes": [3, 5], "blur_sigma": [0.2, 1.0]})
    config.save(tmp_path / "params.yaml")
    assert load_experiment(tmp_path / "params.yaml") == config
    assert "model" in yaml.safe_load((tmp_path / "params.yaml").read_text())


def test_bad_yaml_is_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(path)


def test_every_copy_of_the_defaults_equals_the_dataclasses():
    """config.py's dataclasses are the one source; params.yaml's base and 02_train's parameters cell repeat them."""
    import ast

    import papermill

    source = ExperimentConfig().to_flat()
    base = load_params(paths.PARAMS).base.to_flat()
    assert {key for key in source if base[key] != source[key]} == set()  # params.yaml's base
    declared = papermill.inspect_notebook(str(paths.NOTEBOOKS / "02_train.ipynb"))
    assert set(source) <= set(declared), sorted(set(source) - set(declared))
    assert {key for key, value in source.items() if ast.literal_eval(declared[key]["default"]) != value} == set()


def test_a_copy_that_disagrees_is_caught(tmp_path):
    """The check above can fail: a params.yaml whose base differs in one value is seen to differ."""
    text = paths.PARAMS.read_text().replace("  dropout: 0.3 ", "  dropout: 0.25", 1)
    assert text != paths.PARAMS.read_text()
    (tmp_path / "params.yaml").write_text(text)
    base = load_params(tmp_path / "params.yaml").base.to_flat()
    assert {key for key, value in ExperimentConfig().to_flat().items() if base[key] != value} == {"dropout"}


def test_sweep_key_under_the_wrong_section_is_refused():
    with pytest.raises(ConfigError, match="dropout belongs in section 'model', not 'data'"):
        parse_params({"sweep": {"data.dropout": [0.1, 0.2]}})
    assert parse_params({"sweep": {"model.dropout": [0.1, 0.2]}}).sweep == {"dropout": [0.1, 0.2]}


def test_command_line_overrides_are_yaml_values_and_bad_ones_one_line():
    from fakelib.config import parse_overrides

    assert parse_overrides(["epochs=20", "conv_filters=[8, 16]", " members = 2"]) == {
        "epochs": 20, "conv_filters": [8, 16], "members": 2}
    for item in ("epochs", "=3", "conv_filters=[8,"):
        with pytest.raises(ConfigError, match="--eye-set") as error:
            parse_overrides([item], "--eye-set")
        assert "\n" not in str(error.value)


def test_a_seed_without_room_for_every_draw_says_so():
    top = 2**31 - 1
    assert ExperimentConfig.from_flat({"seed": top}).train.seed == top
    assert ExperimentConfig.from_flat({"seed": top - 2, "members": 3}).train.members == 3
    with pytest.raises(ConfigError, match=rf"train.seed = {top - 1} is not allowed; expected at most {top - 2}: "
                                          rf"the draws of train.members = 3 take seeds {top - 1} to {top + 1}"):
        ExperimentConfig.from_flat({"seed": top - 1, "members": 3})
    with pytest.raises(ConfigError, match=r"train.seed = -1 is not allowed; expected a number in \[0, "):
        ExperimentConfig.from_flat({"seed": -1, "members": 3})
