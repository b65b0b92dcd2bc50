"""Coarse to fine (--scales, --scale_steps) and iterate averaging (--average_decay)."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import make_content, make_stage, make_style, run_steps, save_png
from tfstyle import api
from tfstyle.api import run_config
from tfstyle.config import make_config
from tfstyle.errors import UserError
from tfstyle.features import FeatureExtractor
from tfstyle.objective import Objective
from tfstyle.schedule import Average, Stage, plan, stage_of, upsample
from tolerances import assert_chain_close, assert_within_rounding, vgg19_step_path

LAYERS = "block1_conv1=0.5,block2_conv1=0.5"


def test_scales_double_up_to_the_final_size():
    config = make_config(max_size=512, scales=3, scale_steps="300,150", steps=80)
    assert plan(config, (1024, 768), [(1024, 640)]) == [
        Stage(1, (128, 96), 0, 300), Stage(2, (256, 192), 300, 450), Stage(3, (512, 384), 450, 530)]
    assert config.total_steps == 530
    one_number = make_config(max_size=400, scales=3, scale_steps=20, steps=5)
    assert [(stage.size, stage.steps) for stage in plan(one_number, (300, 400), [(10, 10)])] == [
        ((75, 100), 20), ((150, 200), 20), ((300, 400), 5)]
    square = make_config("coursera", image_size=256, scales=2, scale_steps=4, steps=6)
    assert [stage.size for stage in plan(square, (300, 400), [(500, 100)])] == [(128, 128),
                                                                             (256, 256)]
    single = make_config(max_size=64, scales=1, steps=7)
    assert plan(single, (80, 64), [(72, 72)]) == [Stage(1, (64, 51), 0, 7)]


def test_a_first_scale_too_small_for_vgg19_is_refused():
    with pytest.raises(UserError, match=r"^The image 'photo.jpg' \(1024x768\) would be 16x12 pixels "
                       r"at the first of --scales=3 with --max_size=64, .* use a larger --max_size "
                       r"or fewer --scales\.$"):
        plan(make_config(max_size=64, scales=3), (1024, 768), [(100, 100)], ["photo.jpg"])
    # The style image has as many pixels as the content: a wide one gets too flat.
    with pytest.raises(UserError, match=r"^The style image 'b.png' \(1000x200\) would be 97x19 "
                       r"pixels at the first of --scales=3 with --max_size=200, .* or a larger "
                       r"--style_scale\.$"):
        plan(make_config(max_size=200, scales=3), (400, 300), [(100, 100), (1000, 200)],
             ["a.jpg", "a.png", "b.png"])
    with pytest.raises(UserError, match=r"^The style image \(1000x50\) would be 537x27 pixels with "
                       r"--max_size=120, .* use a larger --max_size or a larger --style_scale\.$"):
        plan(make_config(max_size=120, scales=1), (120, 120), [(1000, 50)])


def test_stage_of_a_step():
    stages = plan(make_config(max_size=512, scales=3, scale_steps=10, steps=5), (512, 512),
                  [(512, 512)])
    assert [stage_of(stages, step).scale for step in (0, 1, 10, 11, 20, 21, 25)] == [
        1, 1, 1, 2, 2, 3, 3]


def test_upsample_keeps_the_range_and_a_flat_image():
    flat = np.full((2, 10, 12, 3), 0.25, np.float32)
    np.testing.assert_allclose(upsample(flat, (24, 20)), 0.25, atol=1e-6)
    noisy = np.random.default_rng(0).uniform(0, 1, (1, 10, 12, 3)).astype(np.float32)
    bigger = upsample(noisy, (24, 20))
    assert bigger.shape == (1, 20, 24, 3) and bigger.min() >= 0 and bigger.max() <= 1


def test_average_is_bias_corrected():
    image = tf.Variable(np.zeros((1, 2, 2, 3), np.float32))
    average = Average(image, 0.5)
    np.testing.assert_array_equal(average.value(), image.numpy())  # before any step
    for value in (1.0, 2.0, 3.0):
        image.assign(tf.fill(image.shape, value))
        average.update()
    # (0.5·0.25·1 + 0.5·0.5·2 + 0.5·3) / (1 − 0.5³) = 2.125 / 0.875, after one rounding each.
    assert_within_rounding(average.value(), np.full((1, 2, 2, 3), 2.125 / 0.875), terms=8)


def test_the_written_image_is_the_average_of_the_steps(content_array, style_array):
    config = make_config(style_layers=LAYERS, scales=1, optimizer="adam", average_decay=0.8)
    stage = make_stage(config, content_array[None, :48, :48], style_array[None, :48, :48])
    raw = []
    result = run_steps(stage, 6, callbacks=[lambda it: raw.append(stage.optimizer.image.numpy())])
    weights = np.array([0.2 * 0.8 ** (5 - i) for i in range(6)])
    expected = np.tensordot(weights, np.stack(raw).astype(np.float64), 1) / (1 - 0.8 ** 6)
    assert_within_rounding(result.image, expected, terms=3 * 6)
    assert not np.allclose(result.image, raw[-1], atol=1e-3)  # not just the last step's image


@pytest.fixture
def files(tmp_path):
    return (save_png(make_content(160, 128), tmp_path / "content.png"),
            save_png(make_style(), tmp_path / "style.png"))


def settings(**overrides):
    return dict(max_size=160, style_layers=LAYERS, content_layer="block2_conv2", quiet=True,
                **overrides)


def test_each_scale_takes_its_own_targets_and_starts_from_the_last_one_upsampled(files):
    """Adam reports the costs of the image before its update: the first step of scale 2 costs
    what the upsampled end of scale 1 costs against targets taken at scale 2's size."""
    content, style = files
    config = make_config(content=content, style=style, optimizer="adam", scales=2,
                         scale_steps=3, steps=2, **settings())
    seen = []
    result = run_config(config, callbacks=[lambda it: seen.append((it.scale, it.size,
                                                                   it.costs, it.image()))])
    assert [(scale, size) for scale, size, _, _ in seen] == [(1, (80, 64))] * 3 + [
        (2, (160, 128))] * 2
    assert result.image.shape == (1, 128, 160, 3) and result.steps == 5
    end_of_first = seen[2][3]
    targets = api.arrays_at(config, api.load_inputs(config, [content], [style]), (160, 128))
    extractor = FeatureExtractor(config.layers)
    expected = Objective.of_images(config, extractor, *targets, (160, 128)).costs(
        upsample(end_of_first, (160, 128)))
    path = vgg19_step_path(*config.layers, pixels=160 * 128)
    for name, value in seen[3][2].items():
        assert_chain_close(value, float(expected[name]), path)


def test_a_run_over_scales_resumes_exactly(tmp_path, files):
    content, style = files

    def run(output, steps, **extra):
        return run_config(make_config(content=content, style=style,
                                      output=str(tmp_path / output), scales=2, scale_steps=3,
                                      steps=steps, average_decay=0.5, optimizer="adam",
                                      **settings(), **extra))

    whole = run("whole.png", 3, checkpoint_every=2)
    # Stopped at the end of scale 1: resumed, it restores scale 1's image and average, then
    # upsamples into scale 2.
    stop_at_3 = [lambda it: (_ for _ in ()).throw(KeyboardInterrupt) if it.step == 3 else None]
    first = run_config(make_config(content=content, style=style,
                                   output=str(tmp_path / "split.png"), scales=2, scale_steps=3,
                                   steps=3, average_decay=0.5, optimizer="adam",
                                   checkpoint_every=2, **settings()), callbacks=stop_at_3)
    assert first.interrupted and first.steps == 3 and first.image.shape == (1, 64, 80, 3)
    resumed = run("split.png", 3, resume=True)
    assert resumed.steps == 6 and len(resumed.history) == 3
    np.testing.assert_array_equal(resumed.image, whole.image)


def test_lbfgs_resumes_exactly_from_a_checkpoint(tmp_path, files):
    content, style = files

    def run(output, steps, **extra):
        return run_config(make_config(content=content, style=style,
                                      output=str(tmp_path / output), scales=1, steps=steps,
                                      **settings(), **extra))

    whole = run("whole.png", 6, checkpoint_every=3)
    run("split.png", 3, checkpoint_every=3)
    resumed = run("split.png", 6, resume=True)
    np.testing.assert_array_equal(resumed.image, whole.image)
    assert resumed.history == whole.history[3:]
