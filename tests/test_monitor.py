"""Monitoring: TensorBoard logs (read back from the files and from a real server), the
progress output, and the run record every PNG carries."""
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
from absl import flags
from PIL import Image
from tensorboard.plugins.hparams import plugin_data_pb2

import tfstyle
from conftest import make_content, make_style, read_events, save_png
from tfstyle import images, monitor, run
from tfstyle.errors import UserError
from tfstyle.loop import Iterate
from tfstyle.schedule import Stage

LAYERS = "block1_conv1=0.5,block2_conv1=0.3,block3_conv1=0.2"
ALPHAS = (10.0, 3.0)  # the two runs differ in α, so the hparams table has something to compare
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two tiny runs with the same --run_name into the same --logdir."""
    folder = tmp_path_factory.mktemp("runs")
    content = save_png(make_content(), folder / "content.png")
    style = save_png(make_style(), folder / "style.png")
    config = tfstyle.make_config(content=content, style=style, max_size=48, steps=5,
                                 optimizer="adam", scales=1, normalize_costs=False, beta=1e-5,
                                 tv_weight=0.0,
                                 style_layers=LAYERS, learning_rate=0.05, image_every=2,
                                 logdir=str(folder / "logs"), run_name="tiny", quiet=True)
    configs = [config.replace(alpha=alpha, output=str(folder / f"out{index}.png"))
               for index, alpha in enumerate(ALPHAS)]
    return folder / "logs", [(each, tfstyle.run_config(each)) for each in configs]


def test_two_runs_into_one_logdir_get_two_directories(two_runs):
    logdir, runs = two_runs
    assert sorted(os.listdir(logdir)) == ["tiny", "tiny-2"]
    assert [result.log_dir for _, result in runs] == [str(logdir / "tiny"), str(logdir / "tiny-2")]


def test_unnamed_runs_never_share_a_directory(tmp_path):
    first = monitor.claim_run_directory(str(tmp_path / "logs"))
    second = monitor.claim_run_directory(str(tmp_path / "logs"))
    assert first != second and os.path.isdir(first) and os.path.isdir(second)
    assert sorted(os.listdir(tmp_path / "logs")) == sorted(map(os.path.basename, (first, second)))


def test_scalars_are_exactly_what_the_step_returned(two_runs):
    for config, result in two_runs[1]:
        events = read_events(result.log_dir)
        scalars = {tag for tag in events.Tags()["tensors"]
                   if events.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"}
        expected = {"cost/total", "cost/content", "cost/style", "optimizer/learning_rate",
                    *(f"style/{name}" for name in config.layer_names)}
        assert scalars == expected  # no cost/tv: there is no total-variation term
        for name in ("total", "content", "style", *(f"style/{n}" for n in config.layer_names)):
            tag = name if "/" in name else f"cost/{name}"
            logged = events.Tensors(tag)
            assert [event.step for event in logged] == [1, 2, 3, 4, 5]
            assert [tf.make_ndarray(event.tensor_proto).item() for event in logged] == [
                np.float32(costs[name]).item() for costs in result.history]
        rates = events.Tensors("optimizer/learning_rate")
        assert [tf.make_ndarray(event.tensor_proto).item() for event in rates] == [
            np.float32(0.05).item()] * 5


def test_images_hparams_and_config_text_are_logged(two_runs):
    for config, result in two_runs[1]:
        events = read_events(result.log_dir)
        assert [event.step for event in events.Tensors("input/content")] == [0]
        assert [event.step for event in events.Tensors("input/style")] == [0]
        generated = events.Tensors("generated")
        assert [event.step for event in generated] == [2, 4, 5]  # every 2 steps and the final one
        width, height, png = generated[-1].tensor_proto.string_val
        final = np.asarray(Image.open(io.BytesIO(png)), np.int16)
        assert (int(width), int(height)) == (48, 38)
        assert np.abs(final - np.asarray(images.to_pil(result.image[0]), np.int16)).max() <= 1

        content = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
        hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
        assert hparams["alpha"].number_value == config.alpha
        assert hparams["learning_rate"].number_value == 0.05
        assert hparams["style_layers"].string_value == LAYERS
        assert hparams["size"].string_value == "48x38"
        assert {"beta", "content_layers", "init", "preset", "weights", "weights_source",
                "seed", "steps"} <= set(hparams)

        text = tf.make_ndarray(events.Tensors("config")[0].tensor_proto).item().decode()
        flag_values = flags.FlagValues()
        run.define_flags(flag_values)
        flag_values(["tfstyle", *(line.strip() for line in text.splitlines()
                                  if line.startswith("    --"))])
        assert run.config_from_flags(flag_values) == config  # the logs reproduce the run


def free_loopback_port():
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]
    except OSError as error:
        pytest.skip(f"cannot bind a loopback port for TensorBoard ({error})")


def fetch_json(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_a_tensorboard_server_shows_both_runs(two_runs, tmp_path):
    logdir, runs = two_runs
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}/data/plugin"
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", f"--logdir={logdir}", "--host=127.0.0.1",
         f"--port={port}", "--load_fast=false", "--reload_interval=1"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "tensorboard.log", "wb"), env=ENV)
    try:
        deadline = time.monotonic() + 60
        scalars = {}
        while time.monotonic() < deadline and set(scalars) != {"tiny", "tiny-2"}:
            assert server.poll() is None, (tmp_path / "tensorboard.log").read_text()
            try:
                scalars = fetch_json(f"{url}/scalars/tags")
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.5)
        assert set(scalars) == {"tiny", "tiny-2"}, (tmp_path / "tensorboard.log").read_text()
        for run_name, (config, _) in zip(("tiny", "tiny-2"), runs):
            assert {"cost/total", "cost/content", "cost/style", "optimizer/learning_rate",
                    *(f"style/{name}" for name in config.layer_names)} == set(scalars[run_name])
        assert "generated" in fetch_json(f"{url}/images/tags")["tiny-2"]
        groups = fetch_json(f"{url}/hparams/session_groups", {
            "experimentName": "", "startIndex": 0, "sliceSize": 10, "colParams": [],
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                "STATUS_RUNNING"]})["sessionGroups"]
        table = {group["name"]: group for group in groups}
        assert {name: table[name]["hparams"]["alpha"] for name in table} == dict(
            zip(("tiny", "tiny-2"), ALPHAS))
        final = {metric["name"]["tag"]: metric["value"] for metric in table["tiny"]["metricValues"]}
        # A float32 value, carried as a double through TensorBoard's JSON: exact.
        assert final["cost/total"] == runs[0][1].history[-1]["total"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_the_run_record_round_trips(tmp_path, content_array):
    content = save_png(content_array, tmp_path / "content.png")
    config = tfstyle.make_config("coursera", content=content, style="sample:starry_night",
                                 output=str(tmp_path / "out.png"), steps=7, seed=11,
                                 beta=1.23456789e-5, style_layers="block1_conv1=0.123456789")
    images.save_image(content_array, config.output, monitor.run_record(config, 7))
    assert monitor.read_run_record(config.output) == config
    record = json.loads(Image.open(config.output).text["tfstyle"])
    assert (record["version"], record["step"]) == (tfstyle.__version__, 7)

    images.save_image(content_array, tmp_path / "out.jpg", monitor.run_record(config, 7))
    with pytest.raises(UserError, match="not a PNG"):
        monitor.read_run_record(str(tmp_path / "out.jpg"))


def test_a_record_from_before_several_content_layers_still_reruns(tmp_path, content_array):
    config = tfstyle.make_config("coursera", output=str(tmp_path / "out.png"),
                                 content_layers="block3_conv2")
    record = monitor.run_record(config, 7)
    old = json.loads(record["tfstyle"])
    del old["config"]["content_layers"], old["config"]["style_layer_weight_exp"]
    old["config"]["content_layer"] = "block3_conv2"
    images.save_image(content_array, config.output, {"tfstyle": json.dumps(old)})
    assert monitor.read_run_record(config.output) == config


def test_relative_input_paths_are_recorded_absolute(tmp_path, content_array, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_png(content_array, "content.png")
    config = tfstyle.make_config(content="content.png", style="sample:tubingen")
    assert monitor.recorded_config(config)["content"] == str(tmp_path / "content.png")
    assert monitor.recorded_config(config)["style"] == "sample:tubingen"


@pytest.mark.parametrize("make_file, words", [
    (lambda path: save_png(make_content(), path), "no tfstyle run record"),
    (lambda path: path.write_bytes(b"not an image"), "not an image"),
    (lambda path: images.save_image(make_content(), path, {"tfstyle": '{"config": {"steps": "x"}}'}),
     "damaged"),
    (lambda path: images.save_image(make_content(), path, {"tfstyle": "{"}), "damaged"),
    (lambda path: None, "does not exist"),
])
def test_only_tfstyle_pngs_can_be_rerun(tmp_path, make_file, words):
    path = tmp_path / "picture.png"
    make_file(path)
    with pytest.raises(UserError, match=words):
        monitor.read_run_record(str(path))


def tfstyle_run(*args):
    return subprocess.run([sys.executable, "-m", "tfstyle.run", *args], capture_output=True,
                          text=True, env=ENV, timeout=300)


def test_from_image_reruns_through_the_cli(two_runs, tmp_path):
    config, _ = two_runs[1][0]
    again = tmp_path / "again.png"
    # Explicit flags beat the recorded ones; everything else comes from the record.
    result = tfstyle_run(f"--from_image={config.output}", f"--output={again}", "--steps=2",
                         "--logdir=")
    assert result.returncode == 0, result.stderr
    assert "Wrote" in result.stderr and "steps/s" in result.stderr
    assert Image.open(again).size == Image.open(config.output).size == (48, 38)
    assert monitor.read_run_record(str(again)) == config.replace(
        output=str(again), steps=2, logdir="")

    refused = tfstyle_run(f"--from_image={tmp_path / 'nothing.png'}", f"--output={again}")
    assert refused.returncode == 2
    assert [line for line in refused.stderr.splitlines() if line.startswith("tfstyle: error:")
            ] == [f"tfstyle: error: Image file '{tmp_path / 'nothing.png'}' does not exist."]


def iterates(stages, costs=lambda step: {"total": 3.0 * step, "content": 1.0, "style": 2.0}):
    """The Iterate records a run over `stages` would hand its callbacks."""
    for stage in stages:
        for step in range(stage.first_step + 1, stage.last_step + 1):
            yield Iterate(step, stages[-1].last_step, stage.scale, len(stages), stage.size,
                          costs(step), None, lambda: None)


def test_progress_is_plain_lines_when_not_on_a_terminal(capsys):
    stages = [Stage(1, (40, 30), 0, 20)]
    progress = monitor.Progress(stages, interactive=False)
    for iterate in iterates(stages, lambda step: {"total": 3.0 * step, "content": 1.0,
                                                  "style": 2.0, "style/x": 5.0}):
        progress(iterate)
    progress.close()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0].split(":")[0] for line in lines] == [
        f"step {step}/20" for step in range(2, 21, 2)]
    assert "steps/s" in lines[-1] and "ETA" in lines[-1] and "total 60" in lines[-1]
    assert "\r" not in "".join(lines)


def test_progress_names_each_scale(capsys):
    stages = [Stage(1, (40, 30), 0, 10), Stage(2, (80, 60), 10, 15)]
    progress = monitor.Progress(stages, interactive=False)
    for iterate in iterates(stages):
        progress(iterate)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "scale 1/2: 40x30 pixels, steps 1-10"
    assert "scale 2/2: 80x60 pixels, steps 11-15" in lines
    assert lines[-1].startswith("step 15/15")


def test_progress_rate_counts_steps_of_this_call_only_and_eta_weighs_pixels(monkeypatch):
    """A run resumed at step 100 does 1 step per second, not 100; a step of the next scale,
    with 4 times the pixels, counts 4 times as long."""
    clock = iter([10.0, 10.0, 11.0])  # step 101 ends at 10 s (its scale starts), step 102 at 11 s
    monkeypatch.setattr(monitor.time, "perf_counter", lambda: next(clock))
    stages = [Stage(1, (10, 10), 0, 200), Stage(2, (20, 20), 200, 300)]
    progress = monitor.Progress(stages, interactive=False)
    progress(list(iterates(stages))[100])  # step 101: its time includes the compilation
    speed, left = progress.rates(102)
    assert speed == 1.0
    assert left == (98 + 4 * 100) * 1.0  # 98 steps at 1 s, then 100 steps of 4x the pixels


def test_progress_bar_on_a_terminal(capsys):
    stages = [Stage(1, (40, 30), 0, 3)]
    progress = monitor.Progress(stages, interactive=True)
    for iterate in iterates(stages, lambda step: {"total": 1.5, "content": 1.0, "style": 2.0}):
        progress(iterate)
    out = capsys.readouterr().out
    assert "3/3" in out and "total: 1.5" in out and "steps/s:" in out


def test_quiet_turns_the_progress_off(capsys, image_files):
    content, style = image_files
    config = tfstyle.make_config(content=content, style=style, max_size=48, steps=2, jit=False,
                                 style_layers="block1_conv1", scales=1)
    tfstyle.run_config(config)
    assert "step 2/2" in capsys.readouterr().out
    tfstyle.run_config(config.replace(quiet=True))
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("changes, words", [
    (dict(log_every=0), "--log_every must be positive"),
    (dict(image_every=-1), "--image_every must not be negative"),
    (dict(run_name="../elsewhere"), "--run_name must be a plain directory name"),
])
def test_bad_monitoring_settings_are_refused(changes, words):
    with pytest.raises(UserError, match=words):
        tfstyle.make_config(**changes)


def test_a_logdir_that_is_a_file_is_refused_before_any_work(tmp_path, image_files):
    content, style = image_files
    blocker = tmp_path / "logs"
    blocker.write_text("")
    with pytest.raises(UserError, match="--logdir"):
        tfstyle.run_config(tfstyle.make_config(content=content, style=style, logdir=str(blocker)))


def test_a_run_over_scales_logs_every_step_tv_and_each_scales_images(tmp_path, image_files):
    content, style = image_files
    config = tfstyle.make_config(content=content, style=style, max_size=160, scales=2,
                                 scale_steps=3, steps=2, tv_weight=0.5, style_layers=LAYERS,
                                 logdir=str(tmp_path / "logs"), run_name="scales", quiet=True,
                                 output=str(tmp_path / "out.png"))
    result = tfstyle.run_config(config)
    events = read_events(result.log_dir)
    scalars = {tag for tag in events.Tags()["tensors"]
               if events.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"}
    # L-BFGS has no learning rate; the total variation term is a cost of its own.
    assert scalars == {"cost/total", "cost/content", "cost/style", "cost/tv",
                       *(f"style/{name}" for name in config.layer_names)}
    tv = events.Tensors("cost/tv")
    assert [event.step for event in tv] == [1, 2, 3, 4, 5]
    assert [tf.make_ndarray(event.tensor_proto).item() for event in tv] == [
        np.float32(costs["tv"]).item() for costs in result.history]
    sizes = [tuple(int(value) for value in event.tensor_proto.string_val[:2])
             for event in events.Tensors("generated")]
    assert sizes == [(80, 64)] * 3 + [(160, 128)] * 2  # every step: 5 steps // 5 images
    content_pb = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content_pb).session_start_info.hparams
    assert hparams["optimizer"].string_value == "lbfgs"
    assert hparams["scales"].number_value == 2 and hparams["tv_weight"].number_value == 0.5
    assert hparams["size"].string_value == "160x128"


def test_a_record_from_before_a_setting_existed_reruns_as_it_ran(tmp_path, content_array):
    """tfstyle 0.1.0 had no --optimizer, --scales, --normalize_costs, ...: its records mean
    Adam on one scale with the course's costs, whatever today's defaults are."""
    old = {name: value for name, value in monitor.recorded_config(
        tfstyle.make_config(optimizer="adam", scales=1, normalize_costs=False)).items()
        if name not in ("optimizer", "scales", "scale_steps", "normalize_costs", "tv_weight",
                        "average_decay")}
    path = tmp_path / "old.png"
    images.save_image(content_array, path, {"tfstyle": json.dumps(
        {"version": "0.1.0", "step": 200, "config": old})})
    config = monitor.read_run_record(str(path))
    assert (config.optimizer, config.scales, config.normalize_costs) == ("adam", 1, False)
    assert (config.tv_weight, config.average_decay) == (0.0, 0.0)
