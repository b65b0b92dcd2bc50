"""The command line, run as a user runs it: a subprocess on real files."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfstyle.config import make_config
from tfstyle.costs import gram_matrix
from tfstyle.features import FeatureExtractor

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def tfstyle_run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "tfstyle.run", *args], capture_output=True,
                          text=True, env=ENV, timeout=timeout)


def style_error_of(path, style_path, size):
    """The style error of the image at `path`, measured independently, as the neutral scorer
    does: the mean over the style layers of ||G - G_S||² / ||G_S||²."""
    config = make_config()
    extractor = FeatureExtractor(config.layer_names)
    load = lambda p: np.asarray(Image.open(p).convert("RGB").resize(size), np.float32)[None] / 255
    style = extractor(load(style_path))
    image = extractor(load(path))
    return np.mean([float(tf.reduce_sum((gram_matrix(image[name]) - gram_matrix(style[name])) ** 2)
                          / tf.reduce_sum(gram_matrix(style[name]) ** 2))
                    for name in config.layer_names])


def test_end_to_end_run_writes_a_stylised_png(tmp_path, image_files):
    content, style = image_files
    output = tmp_path / "out.png"
    # The default preset (L-BFGS, three scales: 40x32, 80x64, 160x128), few steps.
    result = tfstyle_run(f"--content={content}", f"--style={style}", f"--output={output}",
                         "--max_size=160", "--scale_steps=20", "--steps=20")
    assert result.returncode == 0, result.stderr
    assert Image.open(output).size == (160, 128)
    before = style_error_of(content, style, (160, 128))
    after = style_error_of(output, style, (160, 128))
    assert after < 0.35 * before, (before, after)
    assert "Wrote" in result.stderr


def test_flagfile_and_presets(tmp_path, image_files):
    content, style = image_files
    output = tmp_path / "coursera.png"
    flagfile = tmp_path / "run.flags"
    flagfile.write_text(f"--content={content}\n--style={style}\n--output={output}\n"
                        "--preset=coursera\n--image_size=48\n--steps=3\n")
    result = tfstyle_run(f"--flagfile={flagfile}")
    assert result.returncode == 0, result.stderr
    assert Image.open(output).size == (48, 48)  # the course's square images


@pytest.mark.parametrize("args, words", [
    (["--content=missing.png", "--style={style}", "--output={out}"], "does not exist"),
    (["--content={content}", "--style={style}"], "--output"),
    (["--content={content}", "--style={style}", "--output={out}", "--steps=0"], "--steps"),
    (["--content={content}", "--style={style}", "--output={tmp}/no/dir/out.png"], "does not exist"),
    (["--content={content}", "--style={style}", "--output={out}", "--weights={content}"], "weights"),
    (["--content={content}", "--style={style}", "--output={out}",
      "--style_layers=block1_conv1=x"], "not a number"),
    (["--content={content}", "--style={style}", "--output={out}", "--content_layer=block4_conv2",
      "--content_layers=block4_conv2"], "not both"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, image_files, args, words):
    content, style = image_files
    values = dict(content=content, style=style, out=tmp_path / "out.png", tmp=tmp_path)
    result = tfstyle_run(*(arg.format(**values) for arg in args))
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("tfstyle: error:")]
    assert len(errors) == 1 and words in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.png").exists()


def test_content_layer_flags_old_and_new():
    from absl import flags

    from tfstyle import run

    def config_of(*args):
        flag_values = flags.FlagValues()
        run.define_flags(flag_values)
        flag_values(["tfstyle", "--content=c.png", "--style=s.png", "--output=o.png", *args])
        return run.config_from_flags(flag_values)

    assert config_of().content_layers == (("block4_conv2", 1.0),)
    assert config_of("--preset=coursera").content_layers == (("block5_conv4", 1.0),)
    assert config_of("--content_layer=block3_conv2").content_layers == (("block3_conv2", 1.0),)
    several = config_of("--content_layers=block2_conv2=0.5,block4_conv2",
                        "--style_layer_weight_exp=2")
    assert several.content_layers == (("block2_conv2", 0.5), ("block4_conv2", 1.0))
    assert several.style_layer_weight_exp == 2.0


def test_helpfull_lists_every_setting():
    result = tfstyle_run("--helpfull")  # absl exits with 1 after printing help
    assert "Usage: python -m tfstyle.run --content=" in result.stdout
    for flag in ("--content", "--style_layers", "--preset", "--learning_rate", "--image_size"):
        assert flag in result.stdout
