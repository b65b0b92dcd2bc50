import dataclasses

import pytest

from tfstyle.config import GATYS_STYLE_LAYERS, PRESETS, Config, make_config, parse_layer_weights
from tfstyle.errors import UserError


def test_defaults_are_the_default_preset():
    assert make_config() == Config()
    assert PRESETS["default"] == {}


def test_coursera_preset_matches_the_course():
    config = make_config("coursera")
    assert (config.image_size, config.preprocess, config.content_layers) == (
        400, "none", (("block5_conv4", 1.0),))
    assert (config.alpha, config.beta, config.learning_rate) == (10.0, 40.0, 0.01)
    assert config.init == "content_noise"
    assert config.style_layers == GATYS_STYLE_LAYERS
    assert config.preset == "coursera"
    # The course's plain costs, Adam, one size, 2501 steps.
    assert (config.normalize_costs, config.optimizer, config.scales) == (False, "adam", 1)
    assert (config.tv_weight, config.average_decay, config.total_steps) == (0.0, 0.0, 2501)


def test_steps_per_scale():
    assert make_config(scales=3, scale_steps="300,150", steps=80).steps_per_scale == (300, 150, 80)
    assert make_config(scales=4, scale_steps=50, steps=10).steps_per_scale == (50, 50, 50, 10)
    assert make_config(scales=1, steps=7).steps_per_scale == (7,)
    config = make_config(scale_steps=[20, 10])
    assert config.scale_steps == (20, 10) and config.to_dict()["scale_steps"] == "20,10"


def test_explicit_settings_win_over_the_preset():
    config = make_config("coursera", learning_rate=0.05, steps=7)
    assert (config.learning_rate, config.steps, config.alpha) == (0.05, 7, 10.0)


def test_style_layers_accept_text_and_pairs():
    assert parse_layer_weights("block1_conv1=0.5, block3_conv1") == (
        ("block1_conv1", 0.5), ("block3_conv1", 1.0))
    config = Config(style_layers="block2_conv1=2")
    assert config.style_layers == (("block2_conv1", 2.0),)
    assert config.to_dict()["style_layers"] == "block2_conv1=2"
    assert Config(style_layers=[["block1_conv1", 1]]).layer_names == ("block1_conv1",)


@pytest.mark.parametrize("changes, words", [
    (dict(steps=0), "--steps must be positive"),
    (dict(learning_rate=-1.0), "--learning_rate must be positive"),
    (dict(max_size=0), "--max_size must be positive"),
    (dict(image_size=-5), "--image_size must not be negative"),
    (dict(init=""), "--init is empty"),
    (dict(content_layers=""), "--content_layers names no layer"),
    (dict(content_layers="block4_conv2=-1"), "--content_layers weights must be non-negative"),
    (dict(content_layers="block4_conv2=nan"), "the weight of block4_conv2 must be a finite"),
    (dict(style_layer_weight_exp=0.0), "--style_layer_weight_exp must be from 0.1 to 10"),
    (dict(init_noise=1.5), r"--init_noise must be in \[0, 1\]"),
    (dict(pooling="min"), "Unknown --pooling .min.; choose one of: max, avg"),
    (dict(preprocess="caffe"), "Unknown --preprocess"),
    (dict(content_layers="block6_conv1"), "not a VGG19 convolution layer"),
    (dict(content_layers="block4_conv2,block2_conv3"), "not a VGG19 convolution layer"),
    (dict(style_layers="block1_conv1=abc"), "is not a number"),
    (dict(style_layers="block1_conv1=0,block2_conv1=0"), "sum to a positive number"),
    (dict(style_layers="block1_conv1=-1,block2_conv1=2"), "non-negative"),
    (dict(style_layers=""), "names no layer"),
    (dict(beta_1=1.0), "beta_1"),
    (dict(optimizer="sgd"), "Unknown --optimizer 'sgd'"),
    (dict(scales=0), "--scales must be at least 1"),
    (dict(scales=3, scale_steps="1,2,3"), "one number for all 2 scales"),
    (dict(scale_steps="1.5"), "whole numbers"),
    (dict(scale_steps="0"), "--scale_steps must be positive"),
    (dict(tv_weight=-1.0), "--tv_weight must not be negative"),
    (dict(average_decay=1.0), r"--average_decay must be in \[0, 1\)"),
])
def test_bad_settings_are_refused_with_a_sentence(changes, words):
    with pytest.raises(UserError, match=words):
        Config(**changes)


def test_the_older_content_layer_setting_is_one_content_layer_and_not_both():
    assert make_config(content_layer="block3_conv2").content_layers == (("block3_conv2", 1.0),)
    with pytest.raises(UserError, match="not both"):
        make_config(content_layer="block4_conv2", content_layers="block4_conv2")


def test_unknown_preset_and_setting():
    with pytest.raises(UserError, match="Unknown preset 'fast'"):
        make_config("fast")
    with pytest.raises(UserError, match="Unknown setting"):
        make_config(stepz=3)


def test_every_field_has_help():
    assert all(field.metadata.get("help") for field in dataclasses.fields(Config))


def test_api_settings_are_a_config_with_overrides_on_top():
    from tfstyle.api import resolve_config

    assert resolve_config(preset="coursera", steps=3) == make_config("coursera", steps=3)
    base = make_config("coursera")
    assert resolve_config(base, steps=3) == dataclasses.replace(base, steps=3)
    # A preset name on top of a config would label the run without its values.
    with pytest.raises(UserError, match="preset"):
        resolve_config(make_config(), preset="coursera")
