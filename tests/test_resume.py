"""Nothing lost: checkpoints, resume, SIGTERM, NaN and write failures."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import make_stage, poison_from, run_steps
from tfstyle import images
from tfstyle.api import run_config
from tfstyle.checkpoints import checkpoint_directory
from tfstyle.config import make_config
from tfstyle.errors import UserError
from tfstyle.loop import NonFiniteCost
from tolerances import assert_chain_close, smooth_adam_epsilon, vgg19_step_path

LAYERS = "block1_conv1=0.5,block2_conv1=0.5"


def config_for(image_files, output, **settings):
    content, style = image_files
    settings = {"optimizer": "adam", "scales": 1, **settings}
    return make_config(content=content, style=style, output=str(output), max_size=48,
                       style_layers=LAYERS, content_layer="block2_conv2", quiet=True,
                       init="content_noise", **settings)


def test_resumed_run_ends_with_exactly_the_uninterrupted_image(tmp_path, image_files, caplog):
    whole = run_config(config_for(image_files, tmp_path / "whole.png", steps=6,
                                  checkpoint_every=3))
    first = run_config(config_for(image_files, tmp_path / "split.png", steps=3,
                                  checkpoint_every=3))
    assert first.steps == 3
    assert (checkpoint_directory(tmp_path / "split.png") / "checkpoint").exists()
    resumed = run_config(config_for(image_files, tmp_path / "split.png", steps=6, resume=True))
    assert resumed.steps == 6 and len(resumed.history) == 3
    np.testing.assert_array_equal(resumed.image, whole.image)
    assert resumed.history[-1] == whole.history[-1]
    # Exactness under TF op determinism did not cost XLA (the max-pool has no scatter gradient).
    assert "XLA compilation failed" not in caplog.text


def test_resume_with_a_different_objective_is_refused(tmp_path, image_files):
    run_config(config_for(image_files, tmp_path / "out.png", steps=2, checkpoint_every=2))
    with pytest.raises(UserError, match=r"--beta \(was 7.0, now 0.5\)"):
        run_config(config_for(image_files, tmp_path / "out.png", steps=4, resume=True, beta=0.5))
    with pytest.raises(UserError, match="Nothing to resume"):
        run_config(config_for(image_files, tmp_path / "other.png", steps=4, resume=True))


def test_a_checkpoint_from_before_several_content_layers_resumes(tmp_path, image_files):
    run_config(config_for(image_files, tmp_path / "out.png", steps=2, checkpoint_every=2))
    settings_file, = tmp_path.glob("**/settings.json")
    saved = json.loads(settings_file.read_text())
    layer, weight = saved.pop("content_layers").split("=")
    del saved["style_layer_weight_exp"]
    settings_file.write_text(json.dumps({**saved, "content_layer": layer}))
    resumed = run_config(config_for(image_files, tmp_path / "out.png", steps=4, resume=True))
    assert (resumed.steps, len(resumed.history)) == (4, 2)  # steps 3 and 4 only
    saved["content_layer"] = "block5_conv4"
    settings_file.write_text(json.dumps(saved))
    with pytest.raises(UserError, match="--content_layers \\(was 'block5_conv4=1'"):
        run_config(config_for(image_files, tmp_path / "out.png", steps=6, resume=True))


def test_checkpoints_keep_only_the_last_few(tmp_path, image_files):
    run_config(config_for(image_files, tmp_path / "out.png", steps=6, checkpoint_every=1))
    indexes = list(checkpoint_directory(tmp_path / "out.png").glob("*.index"))
    assert sorted(path.name for path in indexes) == ["ckpt-4.index", "ckpt-5.index", "ckpt-6.index"]


def test_sigterm_mid_run_leaves_an_image_and_a_checkpoint(tmp_path, image_files):
    content, style = image_files
    output = tmp_path / "long.png"
    process = subprocess.Popen(
        [sys.executable, "-m", "tfstyle.run", f"--content={content}", f"--style={style}",
         f"--output={output}", "--max_size=48", "--steps=100000", f"--style_layers={LAYERS}",
         "--checkpoint_every=2", "--quiet", "--scales=1"],
        stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (checkpoint_directory(output) / "checkpoint").exists():
        assert time.time() < deadline and process.poll() is None, "no checkpoint appeared"
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr
    assert Image.open(output).size == (48, 38)
    assert (checkpoint_directory(output) / "checkpoint").exists()


def test_nan_stops_the_run_and_keeps_the_last_good_image(content_array, style_array):
    batch = content_array[None, :48, :48], style_array[None, :48, :48]
    config = make_config(style_layers=LAYERS, steps=10, optimizer="adam", scales=1)
    # The poisoned graph is compiled apart, so XLA may group its sums otherwise: an ε under
    # which that rounding cannot flip Adam's steps (see tolerances.py).
    good = make_stage(config, *batch).optimizer
    config = config.replace(epsilon=smooth_adam_epsilon(
        good.objective.value_and_gradient(tf.convert_to_tensor(good.image))[1]))
    good = make_stage(config, *batch).optimizer
    for _ in range(3):
        good.step()
    broken = poison_from(make_stage(config, *batch), 4, poisoned=("total", "style/block2_conv1"))
    saved = []
    with pytest.raises(NonFiniteCost, match="'style/block2_conv1' became nan at step 4; stopped "
                                            "and kept the image of step 3"):
        run_steps(broken, 10, lambda image, step: saved.append((step, image)))
    assert [step for step, _ in saved] == [3]
    path = vgg19_step_path(*config.layers, pixels=48 * 48)
    assert_chain_close(saved[0][1], good.image.numpy(), path * 3)


def test_a_failed_write_keeps_the_previous_file(tmp_path, content_array, monkeypatch):
    path = tmp_path / "out.png"
    images.save_image(content_array, path)
    before = path.read_bytes()

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(OSError):
        images.save_image(content_array * 0.5, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.png"]  # no half-written temp file left behind


def test_disk_full_during_a_run_is_a_sentence(tmp_path, image_files, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(images, "save_image", disk_full)
    with pytest.raises(UserError, match="No space left on device"):
        run_config(config_for(image_files, tmp_path / "out.png", steps=1))
