"""Several content images optimised as one batch: one output each, each as if run alone."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import tfstyle
from conftest import make_content, make_stage, make_style, run_steps, save_png
from tfstyle import images, monitor
from tfstyle.api import run_config
from tfstyle.config import make_config
from tfstyle.errors import UserError
from tolerances import assert_chain_close, smooth_adam_epsilon, vgg19_path, vgg19_step_path

LAYERS = "block1_conv1=0.5,block2_conv1=0.5"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def second_content(width=80, height=64):
    """Another 'photo' of the first one's shape: the first mirrored, its colours rotated."""
    return make_content(width, height)[:, ::-1, ::-1].copy()


@pytest.fixture
def files(tmp_path):
    """Two content images named a.png and b.png (b twice as large, same shape) and a style."""
    return (save_png(make_content(), tmp_path / "a.png"),
            save_png(second_content(160, 128), tmp_path / "b.png"),
            save_png(make_style(), tmp_path / "style.png"))


def settings(**overrides):
    return dict(max_size=48, style_layers=LAYERS, content_layer="block2_conv2",
                init="content_noise", optimizer="adam", scales=1, learning_rate=0.05, quiet=True,
                **overrides)


def test_batch_output_paths():
    assert images.batch_output_paths("out.png", ["a"]) == ["out.png"]
    assert images.batch_output_paths("dir/out.png", ["a", "b"]) == ["dir/out-a.png",
                                                                     "dir/out-b.png"]
    assert images.batch_output_paths("out.jpg", ["photo", "photo", "photo-2", "photo"]) == [
        "out-photo.jpg", "out-photo-2.jpg", "out-photo-2-2.jpg", "out-photo-3.jpg"]
    names = [images.image_name(item, index) for index, item in enumerate(
        ["x/a.jpg", "sample:tubingen", np.zeros((40, 40, 3))])]
    assert names == ["a", "tubingen", "3"]


def test_each_image_of_a_batch_ends_as_if_run_alone(content_array, style_array):
    """Content and Gram costs are per image and Adam is per element, so a batch is B runs."""
    contents = np.stack([content_array[:48, :64], second_content()[:48, :64]])
    style = style_array[None, :48, :48]
    config = make_config(**settings(steps=5))
    path = vgg19_path(*config.layers)
    step_path = vgg19_step_path(*config.layers, pixels=48 * 64)
    batched = make_stage(config, contents, style).optimizer
    start = tf.convert_to_tensor(batched.image)
    batch_costs = batched.objective.image_costs(start)
    _, batch_gradient = batched.objective.value_and_gradient(start)
    for index in range(2):
        alone = make_stage(config, contents[index:index + 1], style).optimizer
        alone_start = tf.convert_to_tensor(alone.image)
        np.testing.assert_array_equal(alone_start[0], start[index])
        # A batch may be convolved with other blockings than one image, so other roundings.
        for name, value in alone.objective.image_costs(alone_start).items():
            assert_chain_close(batch_costs[name][index], value[0], [*path, 48 * 64])
        _, gradient = alone.objective.value_and_gradient(alone_start)
        assert_chain_close(batch_gradient[index], gradient[0], step_path)
    # Adam's steps, each image on its own gradient (with an ε under which other roundings of
    # the gradient cannot flip a step, see tolerances.py).
    config = config.replace(epsilon=smooth_adam_epsilon(batch_gradient))
    batched_run = run_steps(make_stage(config, contents, style), 5)
    for index in range(2):
        alone_run = run_steps(make_stage(config, contents[index:index + 1], style), 5)
        assert_chain_close(batched_run.image[index], alone_run.image[0], step_path * 5)
    # The step returns the batch's sums (compiled, against the eager costs above).
    assert_chain_close(batched_run.history[0]["total"], float(np.sum(batch_costs["total"])),
                       [*path, 48 * 64, 2])


def test_cli_batch_writes_one_png_per_content_with_its_record(tmp_path, files):
    a, b, style = files
    output = tmp_path / "out.png"
    result = subprocess.run(
        [sys.executable, "-m", "tfstyle.run", f"--content={a},{b}", f"--style={style}",
         f"--output={output}", "--max_size=48", "--steps=3", f"--style_layers={LAYERS}",
         "--content_layer=block2_conv2", "--scales=1"],
        capture_output=True, text=True, env=ENV, timeout=300)
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.png", "out-a.png", "out-b.png",
                                            "style.png"]
    written = f"{tmp_path / 'out-a.png'}, {tmp_path / 'out-b.png'}"
    assert f"Wrote {written} after 3 steps" in result.stderr
    for name, content in (("out-a.png", a), ("out-b.png", b)):
        assert Image.open(tmp_path / name).size == (48, 38)
        record = json.loads(images.read_png_text(tmp_path / name)[monitor.RECORD_KEY])
        assert record["step"] == 3
        assert record["config"]["content"] == content  # a run of this image alone
        assert record["config"]["output"] == str(tmp_path / name)
        assert record["config"]["steps"] == 3
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "out-a.png")),
                              np.asarray(Image.open(tmp_path / "out-b.png")))


def test_existing_outputs_are_refused_before_any_work(tmp_path, files):
    a, b, style = files
    (tmp_path / "out-b.png").write_bytes(b"mine")
    config = make_config(content=f"{a},{b}", style=style, output=str(tmp_path / "out.png"),
                         **settings(steps=2))
    with pytest.raises(UserError, match="out-b.png' already exists; pass --overwrite"):
        run_config(config)
    assert not (tmp_path / "out-a.png").exists()
    assert (tmp_path / "out-b.png").read_bytes() == b"mine"
    result = run_config(config.replace(overwrite=True))
    assert result.outputs == [str(tmp_path / "out-a.png"), str(tmp_path / "out-b.png")]
    assert Image.open(tmp_path / "out-b.png").size == (48, 38)


def test_contents_of_different_shapes_are_refused(tmp_path, files):
    a, _, style = files
    tall = save_png(make_content(64, 80), tmp_path / "tall.png")
    with pytest.raises(UserError, match=r"'.*tall.png' \(64x80\) is not the shape of the first "
                                        r"content image \(80x64\).*more than 5%"):
        run_config(make_config(content=f"{a},{tall}", style=style, **settings(steps=1)))
    # 4% off is resized to the first one's size; the course's square mode squashes any shape.
    near = save_png(make_content(80, 62), tmp_path / "near.png")
    assert run_config(make_config(content=f"{a},{near}", style=style,
                                  **settings(steps=1))).image.shape == (2, 38, 48, 3)
    assert run_config(make_config(content=f"{a},{tall}", style=style, image_size=40,
                                  **settings(steps=1))).image.shape == (2, 40, 40, 3)


def test_batch_resumes_exactly(tmp_path, files):
    a, b, style = files

    def run(output, steps, **extra):
        return run_config(make_config(content=f"{a},{b}", style=style,
                                      output=str(tmp_path / output), **settings(steps=steps),
                                      **extra))

    whole = run("whole.png", 4, checkpoint_every=2)
    run("split.png", 2, checkpoint_every=2)
    resumed = run("split.png", 4, resume=True)
    assert resumed.image.shape == (2, 38, 48, 3)
    np.testing.assert_array_equal(resumed.image, whole.image)
    for name in ("a", "b"):
        assert (np.asarray(Image.open(tmp_path / f"split-{name}.png"))
                == np.asarray(Image.open(tmp_path / f"whole-{name}.png"))).all()


def test_stylize_a_list_returns_a_list(content_array, style_array):
    pictures = tfstyle.stylize([content_array, second_content()], style_array,
                               **settings(steps=2))
    assert isinstance(pictures, list) and len(pictures) == 2
    assert [picture.size for picture in pictures] == [(48, 38), (48, 38)]
    single = tfstyle.stylize(content_array, style_array, **settings(steps=2))
    assert np.abs(np.asarray(single, np.int16) - np.asarray(pictures[0], np.int16)).max() <= 1
