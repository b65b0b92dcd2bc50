"""A folder of images in one command: each image its own run, restartable, on this process or
on a real local Ray cluster."""
import json
import os
import signal
import threading
import time

import numpy as np
import pytest
from PIL import Image

import tfstyle
from conftest import CPUS, make_content, make_style, poison_from, save_png
from tfstyle import images, jobs, monitor
from tfstyle.config import make_config
from tfstyle.errors import UserError
from tfstyle.run import cli

SETTINGS = dict(max_size=48, style_layers="block1_conv1=0.5,block2_conv1=0.5",
                content_layers="block2_conv2=1", optimizer="adam", scales=1, steps=3,
                learning_rate=0.05, init="content_noise", quiet=True)


@pytest.fixture
def folder(tmp_path):
    """photos/ with three images of three shapes, a damaged one and a text file; a style."""
    photos = tmp_path / "photos"
    photos.mkdir()
    save_png(make_content(80, 64), photos / "a.png")
    save_png(make_content(64, 96)[:, ::-1], photos / "b.png")
    Image.fromarray((make_content(72, 72)[::-1] * 255).astype(np.uint8)).save(photos / "c.jpg")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    (photos / "notes.txt").write_text("not an image")
    return str(photos), save_png(make_style(), tmp_path / "style.png"), str(tmp_path / "out")


def config_for(folder, **overrides):
    photos, style, out = folder
    return make_config(**{**SETTINGS, "content": photos, "style": style, "output": out,
                          **overrides})


def pixels(path):
    return np.asarray(Image.open(path))


def by_name(summary):
    return {os.path.basename(result.input): result for result in summary.results}


def test_every_image_its_own_run_and_a_summary(folder, tmp_path):
    config = config_for(folder, logdir=str(tmp_path / "logs"))
    summary = tfstyle.run_many(config)
    results = by_name(summary)
    assert [results[name].status for name in ("a.png", "b.png", "broken.jpg", "c.jpg")] == [
        "done", "done", "failed", "done"]
    assert "notes.txt" not in results
    assert "broken.jpg" in results["broken.jpg"].reason
    # Each at its own size and aspect, none padded or stretched to another's.
    out = folder[2]
    assert Image.open(f"{out}/a.png").size == (48, 38)
    assert Image.open(f"{out}/b.png").size == (32, 48)
    assert Image.open(f"{out}/c.png").size == (48, 48)
    # Each record is a run of its image alone, to its own output: --from_image re-runs it.
    record = monitor.read_run_record(f"{out}/b.png")
    assert record.content == os.path.abspath(f"{folder[0]}/b.png")
    assert record.output == os.path.abspath(f"{out}/b.png") or record.output == f"{out}/b.png"
    assert record.steps == 3
    written = json.loads(open(f"{out}/{jobs.SUMMARY_NAME}").read())
    assert (written["done"], written["failed"], written["skipped"]) == (3, 1, 0)
    assert [item["status"] for item in written["results"]] == ["done", "done", "failed", "done"]
    assert written["results"][0]["steps"] == 3
    assert jobs.exit_status(summary) == 2
    # One TensorBoard run per image.
    assert sorted(os.listdir(tmp_path / "logs")) == ["a", "b", "c"]
    assert all(any(name.startswith("events") for name in os.listdir(tmp_path / "logs" / run))
               for run in ("a", "b", "c"))


def test_a_long_file_name_in_another_script_is_an_image_like_any(folder, tmp_path):
    """85 CJK characters fill a file name's 255 bytes; the image's TensorBoard run is named
    after it, cut to what a run name may hold."""
    long_name = f"{folder[0]}/{'写' * 81}.png"
    os.rename(f"{folder[0]}/a.png", long_name)
    summary = tfstyle.run_many(config_for(folder, logdir=str(tmp_path / "logs")), [long_name])
    assert [result.status for result in summary.results] == ["done"]
    assert os.path.exists(summary.results[0].output)
    (run,) = os.listdir(tmp_path / "logs")
    assert run.startswith("写") and len(run.encode()) <= 240


def test_each_image_as_if_run_alone(folder, tmp_path):
    summary = tfstyle.run_many(config_for(folder), [f"{folder[0]}/c.jpg"])
    assert [result.status for result in summary.results] == ["done"]
    alone = tfstyle.stylize(f"{folder[0]}/c.jpg", folder[1], **SETTINGS)
    np.testing.assert_array_equal(pixels(f"{folder[2]}/c.png"), np.asarray(alone))


def test_a_rerun_skips_finished_images_and_redoes_the_rest(folder):
    config = config_for(folder)
    tfstyle.run_many(config)
    out = folder[2]
    os.remove(f"{out}/b.png")
    finished = os.stat(f"{out}/a.png").st_mtime_ns
    summary = tfstyle.run_many(config)
    assert {name: result.status for name, result in by_name(summary).items()} == {
        "a.png": "skipped", "b.png": "done", "broken.jpg": "failed", "c.jpg": "skipped"}
    assert os.stat(f"{out}/a.png").st_mtime_ns == finished
    # Other settings: the finished pictures are not theirs, and are kept unless --overwrite.
    changed = tfstyle.run_many(config.replace(steps=4))
    assert by_name(changed)["a.png"].status == "failed"
    assert "--overwrite" in by_name(changed)["a.png"].reason
    assert os.stat(f"{out}/a.png").st_mtime_ns == finished
    redone = tfstyle.run_many(config.replace(steps=4, overwrite=True))
    assert redone.count("done") == 3
    assert monitor.read_run_record(f"{out}/a.png").steps == 4


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_keeps_finished_images_and_the_rerun_completes(folder, monkeypatch, number):
    """SIGINT or SIGTERM during the second image: the first is kept, the second written as it
    stood (its record says so), the rest cancelled; the rerun finishes exactly those two."""
    real_run_config = jobs.api.run_config
    started = []

    def interrupt_second_image(config, *args, **kwargs):
        started.append(config.content)

        def signal_at_step_2(iterate):
            if iterate.step == 2:
                os.kill(os.getpid(), number)

        callbacks = [signal_at_step_2] if len(started) == 2 else []
        return real_run_config(config, callbacks=callbacks)

    monkeypatch.setattr(jobs.api, "run_config", interrupt_second_image)
    config = config_for(folder)
    summary = tfstyle.run_many(config)
    assert [result.status for result in summary.results] == [
        "done", "interrupted", "cancelled", "cancelled"]
    assert summary.stopped_by == signal.Signals(number).name
    assert jobs.exit_status(summary) == 128 + number
    out = folder[2]
    assert json.loads(images.read_png_text(f"{out}/b.png")[monitor.RECORD_KEY])["step"] == 2
    assert not os.path.exists(f"{out}/c.png")
    monkeypatch.setattr(jobs.api, "run_config", real_run_config)
    rerun = tfstyle.run_many(config)
    assert [result.status for result in rerun.results] == ["skipped", "done", "failed", "done"]
    assert json.loads(images.read_png_text(f"{out}/b.png")[monitor.RECORD_KEY])["step"] == 3


def test_the_command_line(folder, capsys):
    photos, style, out = folder
    flags = [f"--{name}={value}" for name, value in SETTINGS.items() if name != "quiet"]
    status = cli(["tfstyle", f"--content={photos}/*.png", f"--style={style}", f"--output={out}",
                  "--quiet", *flags])
    captured = capsys.readouterr()
    assert status == 0
    assert sorted(os.listdir(out)) == ["a.png", "b.png", jobs.SUMMARY_NAME]
    assert "2/2 images" in captured.out
    assert "2 image(s): 2 done, 0 failed" in captured.out
    status = cli(["tfstyle", f"--content={photos}", f"--style={style}", f"--output={out}",
                  "--quiet", *flags])
    captured = capsys.readouterr()
    assert status == 2
    assert "2 skipped" in captured.out
    assert captured.err.strip().splitlines() == [
        f"tfstyle: failed: {photos}/broken.jpg: '{photos}/broken.jpg' is not an image format "
        "Pillow can read."]


@pytest.mark.parametrize("change, words", [
    (dict(output="{tmp}/style.png"), "is a file"),
    (dict(output="{tmp}/out.png"), "looks like an image file"),
    (dict(output="{tmp}/photos"), "holds input images"),
    (dict(content="{tmp}/photos/*.png", output="{tmp}/photos/"), "holds input images"),
    (dict(checkpoint_every=2), "restarts image by image"),
    (dict(content="{tmp}/photos/*.gif"), "holds no image files"),
    (dict(style="{tmp}/photos/broken.jpg"), "not an image format"),
    (dict(content="{tmp}/photos/a.png", engine="ray", output="{tmp}/x"), "stylises a folder"),
    (dict(engine="spark"), "Unknown --engine"),
    (dict(engine="ray", cpus_per_image=0.0), "--cpus_per_image must be above 0"),
])
def test_folder_runs_refused_up_front(folder, tmp_path, capsys, change, words):
    photos, style, out = folder
    settings = {"content": photos, "style": style, "output": out, "max_size": 48,
                **{name: str(value).format(tmp=tmp_path) for name, value in change.items()}}
    before = sorted(tmp_path.rglob("*"))
    status = cli(["tfstyle", *(f"--{name}={value}" for name, value in settings.items())])
    error = capsys.readouterr().err
    assert status == 2 and words in error and len(error.strip().splitlines()) == 1
    assert sorted(tmp_path.rglob("*")) == before


def test_without_ray_the_ray_engine_says_how_to_get_it(folder, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ray", None)
    with pytest.raises(UserError, match=r"pip install 'tfstyle\[ray\]'"):
        tfstyle.run_many(config_for(folder, engine="ray"))
    assert not os.path.exists(folder[2])


def test_a_summary_that_cannot_be_written_is_said_after_the_pictures(folder, capsys):
    os.makedirs(f"{folder[2]}/{jobs.SUMMARY_NAME}")  # a directory where the file would go
    summary = tfstyle.run_many(config_for(folder), [f"{folder[0]}/a.png"])
    assert summary.count("done") == 1 and os.path.exists(f"{folder[2]}/a.png")
    assert summary.path == "" and "Could not write the summary" in summary.problem
    assert jobs.exit_status(summary) == 2
    jobs.report(summary)
    assert "Could not write the summary" in capsys.readouterr().err


def test_a_cost_gone_nan_still_writes_the_last_finite_picture(folder, monkeypatch):
    """The costs turn NaN at the fourth step (as an overflowing activation makes them): the
    image is failed, with the reason, and the picture of step 3 is written for it, as a single
    run writes it."""
    real_stage_run = jobs.api.stage_run
    monkeypatch.setattr(jobs.api, "stage_run",
                        lambda *args, **kwargs: poison_from(real_stage_run(*args, **kwargs), 4))
    summary = tfstyle.run_many(config_for(folder, steps=5), [f"{folder[0]}/a.png"])
    result = summary.results[0]
    assert result.status == "failed" and "became nan at step 4" in result.reason
    assert "kept the image of step 3" in result.reason
    assert json.loads(images.read_png_text(result.output)[monitor.RECORD_KEY])["step"] == 3
    assert jobs.exit_status(summary) == 2


def test_ray_gives_the_local_engines_pixels_and_reports_bad_inputs(folder, tmp_path, local_ray):
    local = tfstyle.run_many(config_for(folder))
    remote = tfstyle.run_many(config_for(folder, engine="ray", output=str(tmp_path / "ray"),
                                         cpus_per_image=float(CPUS)))
    assert [result.status for result in remote.results] == ["done", "done", "failed", "done"]
    # The worker read its own copy of the file; the reason names the driver's.
    assert f"'{folder[0]}/broken.jpg'" in by_name(remote)["broken.jpg"].reason
    for name in ("a.png", "b.png", "c.png"):
        np.testing.assert_array_equal(pixels(f"{folder[2]}/{name}"),
                                      pixels(tmp_path / "ray" / name))
    # The record does not say where it ran: --from_image re-runs it on either engine.
    assert monitor.read_run_record(str(tmp_path / "ray" / "a.png")).engine == "local"
    assert local.count("done") == remote.count("done") == 3
    again = tfstyle.run_many(config_for(folder, engine="ray", output=str(tmp_path / "ray")))
    assert again.count("skipped") == 3 and again.count("done") == 0


def kill_first_worker(name, killed, stop, kill=True, patience=600):
    """SIGKILL the first Ray worker seen running `name` (its process title while it does), and
    add its pid to `killed`; kill=False only notes it. Gives up after `patience` seconds."""
    deadline = time.monotonic() + patience
    while not stop.is_set() and not killed and time.monotonic() < deadline:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as file:
                    title = file.read().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
            if title.startswith(f"ray::{name}"):
                if kill:
                    os.kill(int(pid), signal.SIGKILL)
                killed.append(int(pid))
                return
        time.sleep(0.05)


SLOW = dict(max_size=64, steps=40)  # seconds per image, so that a worker is caught mid-image


def test_a_killed_worker_has_its_image_retried(folder, local_ray):
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=kill_first_worker, args=("run_image", killed, stop))
    killer.start()
    try:
        summary = tfstyle.run_many(config_for(folder, engine="ray", **SLOW),
                                   [f"{folder[0]}/a.png", f"{folder[0]}/c.jpg"])
    finally:
        stop.set()
        killer.join()
    assert killed, "no worker was seen running an image"
    assert [result.status for result in summary.results] == ["done", "done"]
    # The killed worker's image was run again, by another process.
    assert all(not result.worker.endswith(f":{killed[0]}") for result in summary.results)
    assert all(monitor.read_run_record(result.output).steps == 40 for result in summary.results)


def test_ctrl_c_cancels_the_ray_tasks_and_keeps_what_was_written(folder, local_ray):
    seen, stop = [], threading.Event()

    def interrupt_once_an_image_runs():
        kill_first_worker("run_image", seen, stop, kill=False)
        if seen:
            os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=interrupt_once_an_image_runs)
    watcher.start()
    try:
        summary = tfstyle.run_many(config_for(folder, engine="ray", **SLOW))
    finally:
        stop.set()
        watcher.join()
    assert summary.stopped_by == "SIGINT" and jobs.exit_status(summary) == 130
    statuses = {result.status for result in summary.results}
    assert "cancelled" in statuses and statuses <= {"done", "failed", "cancelled"}
    for result in summary.results:
        assert os.path.exists(result.output) == (result.status == "done")
    assert json.loads(open(summary.path).read())["stopped_by"] == "SIGINT"
    # No task is left running on the cluster.
    time.sleep(2)
    left = []
    kill_first_worker("run_image", left, threading.Event(), kill=False, patience=1)
    assert not left
