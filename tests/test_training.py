"""python -m tfstyle.train end to end on a few tiny crops: the model, its checkpoints and
TensorBoard log, Ctrl-C and --resume, applying it with --model and load_model, bad inputs."""
import json
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfstyle
from conftest import make_content, make_style, read_events, save_png
from tfstyle import fast, images, training
from tfstyle.run import cli as run_cli
from tfstyle.train import cli

TINY = ["--steps=4", "--batch_size=2", "--crop_size=32", "--width=4", "--residual_blocks=1",
        "--checkpoint_every=2", "--sample_every=2", "--log_every=1", "--held_out=1", "--quiet",
        "--style_layers=block1_conv1=0.5,block2_conv1=0.5", "--content_layers=block2_conv2=1"]


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for number in range(3):
        save_png(make_content(48 + 8 * number, 40), folder / f"photo{number}.png")
    return folder


def train(photos, model_dir, *extra):
    style = save_png(make_style(40, 40), photos.parent / "style.png")
    return cli(["tfstyle.train", f"--content_dir={photos}", f"--style={style}",
                f"--model_dir={model_dir}", *TINY, *extra])


def network_output(model_dir, photo):
    return fast.load_model(model_dir).stylise(photo)


def test_training_writes_a_model_its_checkpoints_settings_and_log(photos, tmp_path):
    model_dir = tmp_path / "model"
    assert train(photos, model_dir) == 0
    assert sorted(os.listdir(model_dir)) == ["checkpoints", "logs", "model.json", "model.keras",
                                             "train.json"]
    record = json.loads((model_dir / "model.json").read_text())
    assert record["steps_done"] == 4 and record["seconds"] > 0 and record["training_photos"] == 2
    assert record["held_out_photos"] == [str(photos / "photo0.png")]
    assert tf.train.latest_checkpoint(str(model_dir / "checkpoints")).endswith("ckpt-4")
    settings = json.loads((model_dir / "train.json").read_text())
    assert settings["steps"] == 4 and settings["style_layers"] == "block1_conv1=0.5,block2_conv1=0.5"
    assert "extend" not in settings  # so runs recorded before --extend existed still resume
    events = read_events(model_dir / "logs" / "train")
    for tag in ("cost/total", "cost/content", "cost/style", "style/block1_conv1"):
        assert [event.step for event in events.Tensors(tag)] == [1, 2, 3, 4], tag
    # The held-out photo, through the network as it was at steps 2 and 4.
    assert [event.step for event in events.Tensors("generated")] == [2, 4]
    assert [event.step for event in events.Tensors("input/content")] == [0]


def test_a_trained_network_stylises_through_run_and_the_api(photos, tmp_path):
    model_dir = tmp_path / "model"
    assert train(photos, model_dir) == 0
    content = save_png(make_content(50, 38), tmp_path / "content.png")
    output = tmp_path / "out.png"
    assert run_cli(["tfstyle", f"--model={model_dir}", f"--content={content}",
                    f"--output={output}", "--max_size=50", "--quiet"]) == 0
    written = np.asarray(images.load_image(str(output)), np.float32) / 255
    model = tfstyle.load_model(model_dir / "model.keras")
    expected = model.stylise(images.to_array(images.load_image(content), (50, 38))[None])[0]
    assert written.shape == (38, 50, 3)
    assert np.abs(written - expected).max() <= 1 / 255 + 1e-6  # 8-bit rounding
    picture = model(make_content(50, 38), max_size=100)
    assert picture.size == (100, 76)
    # A folder of photos through the network, with the many-images machinery.
    assert run_cli(["tfstyle", f"--model={model_dir}", f"--content={photos}",
                    f"--output={tmp_path / 'folder'}", "--quiet"]) == 0
    assert sorted(os.listdir(tmp_path / "folder")) == [
        "photo0.png", "photo1.png", "photo2.png", "tfstyle-summary.json"]


@pytest.mark.parametrize("unreadable_photo", [False, True])
def test_ctrl_c_saves_the_network_and_resume_ends_where_the_whole_run_does(
        photos, tmp_path, monkeypatch, capsys, unreadable_photo):
    tf.config.experimental.enable_op_determinism()
    if unreadable_photo:  # left out when first drawn, before the stop: the resumed run's
        (photos / "photo9.png").write_bytes(b"broken")  # skipped batches must leave it out too
    assert train(photos, tmp_path / "whole") == 0
    real_batches = training.photo_batches

    def interrupted_batches(*args, **kwargs):
        for number, batch in enumerate(real_batches(*args, **kwargs), 1):
            if number == 2:  # during step 2
                os.kill(os.getpid(), signal.SIGINT)
            yield batch

    monkeypatch.setattr(training, "photo_batches", interrupted_batches)
    stopped = tmp_path / "stopped"
    assert train(photos, stopped) == 128 + signal.SIGINT
    error = capsys.readouterr().err
    assert "training stopped by SIGINT at step 2" in error and "--resume" in error
    assert (stopped / "model.keras").is_file()
    monkeypatch.setattr(training, "photo_batches", real_batches)
    assert train(photos, stopped) == 2
    assert "is not empty" in capsys.readouterr().err
    assert train(photos, stopped, "--resume", "--beta=2") == 2
    assert "other settings" in capsys.readouterr().err
    assert train(photos, stopped, "--resume") == 0
    photo = make_content(40, 32)[None]
    np.testing.assert_allclose(network_output(stopped, photo),
                               network_output(tmp_path / "whole", photo), atol=1e-6)


def test_a_resumed_piece_takes_its_own_learning_rate(photos, tmp_path):
    model_dir = tmp_path / "model"
    assert train(photos, model_dir) == 0
    photo = make_content(40, 32)[None]
    before = network_output(model_dir, photo)
    # At a rate of 1e-12 Adam's steps (about the rate each) leave the network as it was; at the
    # checkpoint's 1e-3 they would move it by far more.
    assert train(photos, model_dir, "--resume", "--steps=6", "--learning_rate=1e-12") == 0
    np.testing.assert_allclose(network_output(model_dir, photo), before, atol=1e-7)
    record = json.loads((model_dir / "model.json").read_text())
    assert record["learning_rates"] == [[0, 1e-3], [4, 1e-12]] and record["steps_done"] == 6
    assert train(photos, model_dir, "--resume", "--steps=8", "--learning_rate=1e-3") == 0
    assert np.abs(network_output(model_dir, photo) - before).max() > 1e-4
    record = json.loads((model_dir / "model.json").read_text())
    assert record["learning_rates"] == [[0, 1e-3], [4, 1e-12], [6, 1e-3]]


def test_a_conditional_network_learns_several_styles_and_mixes_them(photos, tmp_path, capsys):
    second = save_png(make_content(40, 40)[::-1], tmp_path / "second_style.png")
    style = save_png(make_style(40, 40), tmp_path / "style.png")
    model_dir = tmp_path / "conditional"
    assert cli(["tfstyle.train", f"--content_dir={photos}", f"--style={style},{second}",
                f"--model_dir={model_dir}", "--method=conditional", *TINY]) == 0
    model = tfstyle.load_model(model_dir)
    assert model.styles == 2 and model.style_names == f"{style},{second}"
    photo = make_content(40, 32)[None]
    first_only = model.stylise(photo, [1, 0])
    assert np.abs(first_only - model.stylise(photo, [0, 1])).max() > 1e-3
    # Shares, not amounts: 2,0 is 1,0; equal shares are the default.
    np.testing.assert_array_equal(model.stylise(photo, [2, 0]), first_only)
    np.testing.assert_array_equal(model.stylise(photo), model.stylise(photo, [0.5, 0.5]))
    events = read_events(model_dir / "logs" / "train")
    generated = events.Tensors("generated")[-1]
    assert len(tf.make_ndarray(generated.tensor_proto)) == 2 + 2  # the held-out photo in each
    content = save_png(make_content(48, 40), tmp_path / "content.png")
    for weights, status in (("1,0", 0), ("1,2,3", 2)):
        assert run_cli(["tfstyle", f"--model={model_dir}", f"--content={content}",
                        f"--output={tmp_path / f'mixed{status}.png'}", "--max_size=48",
                        f"--style_weights={weights}", "--quiet"]) == status
    assert "has 2 styles" in capsys.readouterr().err
    written = np.asarray(images.load_image(str(tmp_path / "mixed0.png")), np.float32) / 255
    expected = model.stylise(images.to_array(images.load_image(content), (48, 40))[None],
                             [1, 0])[0]
    assert np.abs(written - expected).max() <= 1 / 255 + 1e-6
    # One style only for the plain network.
    assert train(photos, tmp_path / "plain", f"--style={style},{second}") == 2
    assert "--method=conditional learns the 2" in capsys.readouterr().err


def test_extend_adds_a_style_to_a_conditional_network_training_only_its_norms(
        photos, tmp_path, capsys):
    first = save_png(make_style(40, 40), tmp_path / "style.png")
    second = save_png(make_content(40, 40)[::-1], tmp_path / "second_style.png")
    third = save_png(make_style(40, 40)[..., ::-1], tmp_path / "third_style.png")
    base_dir, extended_dir = tmp_path / "conditional", tmp_path / "extended"
    assert cli(["tfstyle.train", f"--content_dir={photos}", f"--style={first},{second}",
                f"--model_dir={base_dir}", "--method=conditional", *TINY]) == 0
    # --width is the extended network's own (4 here), whatever the flag says.
    assert cli(["tfstyle.train", f"--content_dir={photos}", f"--style={third}",
                f"--model_dir={extended_dir}", "--method=conditional", f"--extend={base_dir}",
                *TINY, "--width=16"]) == 0
    base, extended = tfstyle.load_model(base_dir), tfstyle.load_model(extended_dir)
    assert extended.styles == 3 and extended.style_names == f"{first},{second},{third}"
    for old in base.network.layers:
        new = extended.network.get_layer(old.name)
        for before, after in zip(old.get_weights(), new.get_weights()):
            if isinstance(old, training.networks.InstanceNormalization):
                np.testing.assert_array_equal(after[:2], before, err_msg=old.name)
                assert np.abs(after[2] - before.mean(0)).max() > 0, old.name  # trained
            else:
                np.testing.assert_array_equal(after, before, err_msg=old.name)
    photo = make_content(40, 32)[None]
    np.testing.assert_array_equal(extended.stylise(photo, [1, 0, 0]), base.stylise(photo, [1, 0]))
    assert np.abs(extended.stylise(photo, [0, 0, 1]) - base.stylise(photo, [1, 0])).max() > 1e-3
    events = read_events(extended_dir / "logs" / "train")
    assert len(tf.make_ndarray(events.Tensors("generated")[-1].tensor_proto)) == 2 + 1
    # A one-style Johnson network becomes a conditional one, its style the first.
    johnson = tmp_path / "johnson.keras"
    training.networks.johnson_network(4, 1).save(johnson)
    assert cli(["tfstyle.train", f"--content_dir={photos}", f"--style={third}",
                f"--model_dir={tmp_path / 'from_johnson'}", "--method=conditional",
                f"--extend={johnson}", *TINY]) == 0
    two = tfstyle.load_model(tmp_path / "from_johnson")
    assert two.styles == 2
    np.testing.assert_array_equal(two.stylise(photo, [1, 0]),
                                  tfstyle.load_model(johnson).stylise(photo))
    # Only onto a Johnson or conditional network, and only with --method=conditional.
    texture = tmp_path / "texture.keras"
    training.networks.texture_network(4, 2).save(texture)
    for flags, words in (([f"--extend={texture}", "--method=conditional"], "is a texture network"),
                         ([f"--extend={tmp_path / 'none'}", "--method=conditional"],
                          "--extend '"),
                         ([f"--extend={base_dir}"], "use it with --method=conditional")):
        assert cli(["tfstyle.train", f"--content_dir={photos}", f"--style={third}",
                    f"--model_dir={tmp_path / 'no'}", *TINY, *flags]) == 2
        assert words in capsys.readouterr().err


def test_a_texture_network_learns_a_style_from_noise_and_paints_any_size(tmp_path, capsys):
    style = save_png(make_style(40, 40), tmp_path / "style.png")
    model_dir = tmp_path / "texture"
    flags = [f"--style={style}", f"--model_dir={model_dir}", "--method=texture", "--levels=3",
             *[flag for flag in TINY if not flag.startswith("--held_out")]]
    assert cli(["tfstyle.train", *flags]) == 0
    record = json.loads((model_dir / "model.json").read_text())
    assert "content" not in record["last_costs"] and record["last_costs"]["style"] > 0
    events = read_events(model_dir / "logs" / "train")
    assert [event.step for event in events.Tensors("generated")] == [2, 4]
    model = tfstyle.load_model(model_dir)
    assert model.levels == 3
    first, again = model.texture((70, 45), seed=1), model.texture((70, 45), seed=1)
    assert first.size == (70, 45)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(model.texture((70, 45), seed=2)))
    output = tmp_path / "texture.png"
    assert run_cli(["tfstyle", f"--model={model_dir}", f"--output={output}", "--image_size=40",
                    "--seed=1", "--quiet"]) == 0
    np.testing.assert_array_equal(np.asarray(images.load_image(str(output))),
                                  np.asarray(model.texture((40, 40), seed=1)))
    assert run_cli(["tfstyle", f"--model={model_dir}", "--content=sample:tubingen",
                    f"--output={tmp_path / 'no.png'}", "--quiet"]) == 2
    assert "texture network: it takes no --content" in capsys.readouterr().err
    assert cli(["tfstyle.train", *flags[:1], f"--model_dir={tmp_path / 'odd'}",
                "--method=texture", "--levels=5", "--crop_size=36"]) == 2
    assert "does not divide by 2^(levels - 1) = 16" in capsys.readouterr().err
    assert cli(["tfstyle.train", *flags, f"--content_dir={tmp_path}",
                f"--model_dir={tmp_path / 'other'}"]) == 2
    assert "leave out --content_dir" in capsys.readouterr().err


def test_a_failed_start_leaves_the_model_dir_usable_and_bad_photos_are_left_out(
        photos, tmp_path, capsys, caplog):
    model_dir = tmp_path / "model"
    (photos / "photo0.png").write_bytes(b"not a png")  # the held-out photo
    assert train(photos, model_dir) == 2
    assert "photo0.png" in capsys.readouterr().err
    assert not (model_dir / "train.json").exists()
    save_png(make_content(48, 40), photos / "photo0.png")
    (photos / "photo9.png").write_bytes(b"broken")  # drawn for training: left out
    assert train(photos, model_dir) == 0
    assert "Left out of training: 'photo9.png'" in caplog.text.replace(str(photos) + "/", "")
    # More steps continue a finished run; as many or fewer are refused.
    assert train(photos, model_dir, "--resume") == 2
    assert "at step 4 already" in capsys.readouterr().err
    assert train(photos, model_dir, "--resume", "--steps=6") == 0
    assert json.loads((model_dir / "model.json").read_text())["steps_done"] == 6


def test_model_runs_refuse_what_has_no_part_in_them(photos, tmp_path, capsys):
    six = keras.Sequential([keras.Input((None, None, 6)), keras.layers.Conv2D(3, 1)])
    six.save(tmp_path / "six.keras")
    johnson = tmp_path / "johnson.keras"
    training.networks.johnson_network(4, 1).save(johnson)
    for flags, words, output in [
            ([f"--model={tmp_path / 'six.keras'}", "--content=sample:tubingen"],
             "not a tfstyle style network", tmp_path / "out.png"),
            ([f"--model={tmp_path / 'missing'}", f"--content={photos}"],  # once, not per photo
             "neither a model file nor a training directory", tmp_path / "out"),
            ([f"--model={johnson}", "--content=sample:tubingen", "--style=sample:starry_night"],
             "--style has no part in a run with this --model", tmp_path / "out.png"),
            ([f"--model={johnson}", f"--content={photos}", "--style=sample:starry_night"],
             "--style has no part in a run with this --model", tmp_path / "out"),
            ([f"--model={johnson}", "--content=sample:tubingen", "--alpha=0.5",
              "--preserve_colors=histogram"], "--alpha and --preserve_colors=histogram have no",
             tmp_path / "out.png")]:
        assert run_cli(["tfstyle", *flags, f"--output={output}", "--quiet"]) == 2
        error = capsys.readouterr().err.strip()
        assert words in error and len(error.splitlines()) == 1, error
        assert not output.exists()


@pytest.mark.parametrize("flags, words", [
    (["--method=gatys"], "--method must be one of johnson"),
    (["--crop_size=30"], "--crop_size must be a multiple of 4"),
    (["--held_out=3"], "training needs more than the 3 --held_out"),
    (["--steps=0"], "--steps must be at least 1"),
    (["--seed=-1"], "--seed must be 0 or more"),
    (["--crop_size=100000"], "--crop_size=100000 is larger than 1024"),
    (["--alpha=-1"], "alpha"),
    (["--style_scale=0.5"], "use a larger --crop_size or --style_scale"),
])
def test_bad_training_settings_are_one_line(photos, tmp_path, capsys, flags, words):
    assert train(photos, tmp_path / "model", *flags) == 2
    error = capsys.readouterr().err.strip()
    assert words in error and len(error.splitlines()) == 1, error
    assert not (tmp_path / "model" / "model.keras").exists()


def test_a_foreign_or_damaged_model_is_one_line(tmp_path, capsys):
    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    dense.save(tmp_path / "dense.keras")
    (tmp_path / "text.keras").write_text("not a model")
    whole = tmp_path / "whole.keras"
    tfstyle_network = training.networks.johnson_network(4, 1)
    tfstyle_network.save(whole)
    (tmp_path / "cut.keras").write_bytes(whole.read_bytes()[:2000])
    for name, words in [("dense.keras", "not a tfstyle style network"),
                        ("text.keras", "is not a Keras model file"),
                        ("cut.keras", "is not a Keras model file"),
                        ("missing", "neither a model file nor a training directory")]:
        status = run_cli(["tfstyle", f"--model={tmp_path / name}", "--content=sample:tubingen",
                          f"--output={tmp_path / 'out.png'}", "--quiet"])
        error = capsys.readouterr().err.strip()
        assert status == 2 and words in error and len(error.splitlines()) == 1, (name, error)
    assert not (tmp_path / "out.png").exists()
