"""A clip in one command: frames in order from the previous one warped along the flow, with
the temporal cost; shots cut apart and run on Ray; restartable; bad files refused in a line."""
import json
import os
import signal
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import CPUS, make_content, make_style, read_events, save_png
from tfstyle import images, monitor, video
from tfstyle.config import make_config
from tfstyle.errors import UserError
from tfstyle.features import FeatureExtractor
from tfstyle.objective import Objective, Temporal
from tfstyle.run import cli
from tfstyle.style import Style

pytest.importorskip("imageio_ffmpeg")
pytest.importorskip("cv2")

SETTINGS = dict(max_size=64, style_layers="block1_conv1=0.5,block2_conv1=0.5",
                content_layers="block2_conv2=1", optimizer="adam", scales=1, steps=3,
                frame_steps=2, learning_rate=0.05, quiet=True)


def pan(count, size=(64, 48), name="sample:tubingen"):
    """The first `count` frames of a 12-frame pan: 3 pixels a frame, which DIS follows at
    this size."""
    return video.pan(images.load_image(name), 12, size)[:count]


def write_clip(path, frames, fps=10.0, audio=False):
    video.encode(str(path), iter(frames), frames[0].shape[1::-1], fps)
    if audio:  # a tone as long as the clip, muxed in by the same ffmpeg
        import imageio_ffmpeg
        silent = f"{path}.silent.mp4"
        os.replace(path, silent)
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", silent,
                        "-f", "lavfi", "-i", f"sine=frequency=440:duration={len(frames) / fps}",
                        "-c:v", "copy", "-c:a", "aac", "-shortest", str(path)], check=True)
        os.remove(silent)
    return str(path)


def read(path):
    import imageio_ffmpeg
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    frames = [np.frombuffer(data, np.uint8).reshape(*meta["size"][::-1], 3) for data in reader]
    return meta, frames


def pixels(path):
    return np.asarray(Image.open(path))


def steps_of(folder, count):
    """The step each frame's run record says its picture is of."""
    return [json.loads(images.read_png_text(video.frame_path(str(folder), number))
                       [monitor.RECORD_KEY])["step"] for number in range(count)]


@pytest.fixture
def clip(tmp_path):
    return (write_clip(tmp_path / "clip.mp4", pan(3), audio=True),
            save_png(make_style(), tmp_path / "style.png"))


def config_for(clip, output, **overrides):
    return make_config(**{**SETTINGS, "content": clip[0], "style": clip[1],
                          "output": str(output), **overrides})


def test_the_temporal_term_is_the_weighted_squared_difference_from_the_warped_frame():
    config = make_config(scales=1, style_layers="block1_conv1=1", content_layers="block1_conv2=1",
                         tv_weight=0.0, temporal_weight=3.0)
    extractor = FeatureExtractor(config.layers)
    content, style = make_content(32, 32)[None], make_style(32, 32)[None]
    image = tf.constant(np.full((1, 32, 32, 3), 0.75, np.float32))
    weights = np.zeros((1, 32, 32), np.float32)
    weights[:, :, :16] = 1.0  # half the pixels trusted
    def costs(temporal):
        return Objective.of_images(config, extractor, content, [Style(style)], (32, 32),
                                   temporal).costs(image)
    alone = costs(None)
    assert "temporal" not in alone
    # (0.75 - 0.25)² on half the pixels, over n_H·n_W·n_C: 0.125, exactly in float32.
    apart = costs(Temporal(np.full((1, 32, 32, 3), 0.25, np.float32), weights))
    assert float(apart["temporal"]) == 0.125
    assert float(apart["total"]) == float(alone["total"] + np.float32(3.0 * 0.125))
    assert float(costs(Temporal(image.numpy(), weights))["temporal"]) == 0.0
    # A coarser scale gets both halved: the trusted half stays trusted.
    half = Temporal(np.full((1, 32, 32, 3), 0.25, np.float32), weights).at((16, 16))
    assert half.warped.shape == (1, 16, 16, 3) and half.weights.shape == (1, 16, 16)
    assert np.all(half.weights[:, :, :7] == 1) and np.all(half.weights[:, :, 9:] == 0)


def test_cuts_split_the_clip_into_shots():
    # A pan four times as fast as the others is still one shot.
    fast = video.pan(images.load_image("sample:starry_night"), 4, (64, 48))
    assert video.shots(pan(5) + fast) == [range(0, 5), range(5, 9)]
    assert video.shots(pan(12)) == [range(0, 12)]


def test_flicker_is_small_for_a_pan_and_large_for_noise():
    frames = pan(8)
    flows = [None] + [(video.flow.optical_flow(a, b), video.flow.optical_flow(b, a))
                      for a, b in zip(frames, frames[1:])]
    noise = [np.random.default_rng(seed).integers(0, 256, frames[0].shape, np.uint8)
             for seed in range(8)]
    assert video.flicker(frames, flows) < 0.03
    assert video.flicker(noise, flows) > 0.2


def test_a_clip_end_to_end_with_its_sound_frame_rate_and_records(clip, tmp_path):
    output = tmp_path / "styled.mp4"
    assert cli(["tfstyle", f"--content={clip[0]}", f"--style={clip[1]}", f"--output={output}",
                *(f"--{name}={value}" for name, value in SETTINGS.items())]) == 0
    meta, frames = read(output)
    assert meta["fps"] == 10.0 and meta["size"] == (64, 48) and meta["audio_codec"] == "aac"
    assert len(frames) == 3
    folder = f"{output}{video.FRAMES_SUFFIX}"
    # The first frame runs the schedule, the later ones --frame_steps from the warped one.
    assert steps_of(folder, 3) == [3, 2, 2]
    # The video is those frames (as H.264 keeps them: close, not bit for bit).
    for number, frame in enumerate(frames):
        stylised = pixels(video.frame_path(folder, number)).astype(float)
        assert np.abs(frame - stylised).mean() < 8
        assert np.abs(stylised - np.asarray(pan(3)[number], float)).mean() > 10  # painted
    # Part of a clip has no sound that lines up with it; the frames keep their numbers.
    part = tmp_path / "part"
    assert cli(["tfstyle", f"--content={clip[0]}", f"--style={clip[1]}", f"--output={part}",
                "--start_frame=1", "--every_nth_frame=2",
                *(f"--{name}={value}" for name, value in SETTINGS.items())]) == 0
    assert sorted(os.listdir(part)) == ["000001.png", "flow", "manifest.json"]


def test_a_stopped_clip_resumes_at_its_first_unfinished_frame_exactly(clip, tmp_path,
                                                                     monkeypatch):
    whole = video.run_video(config_for(clip, tmp_path / "whole"))
    assert (whole.done, whole.skipped, whole.stopped_by) == (3, 0, "")
    real_run_config = video.api.run_config
    calls = []

    def interrupt_the_second_frame(config, *args, **kwargs):
        calls.append(config)
        def stop(iterate):
            if len(calls) == 2 and iterate.step == 1:
                os.kill(os.getpid(), signal.SIGINT)
        return real_run_config(config, *args, callbacks=[stop], **kwargs)

    monkeypatch.setattr(video.api, "run_config", interrupt_the_second_frame)
    output = tmp_path / "stopped"
    stopped = video.run_video(config_for(clip, output))
    assert (stopped.done, stopped.stopped_by) == (1, "SIGINT")
    assert sorted(name for name in os.listdir(output) if name.endswith(".png")) == ["000000.png"]
    monkeypatch.setattr(video.api, "run_config", real_run_config)
    with pytest.raises(UserError, match="pass --resume to continue it"):
        video.run_video(config_for(clip, output))
    with pytest.raises(UserError, match="other inputs or settings"):
        video.run_video(config_for(clip, output, resume=True, frame_steps=5))
    resumed = video.run_video(config_for(clip, output, resume=True))
    assert (resumed.done, resumed.skipped) == (2, 1)
    for number in range(3):
        np.testing.assert_array_equal(pixels(video.frame_path(str(output), number)),
                                      pixels(video.frame_path(str(tmp_path / "whole"), number)))


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_later_frames_reuse_one_compiled_step_and_end_as_if_run_alone(tmp_path, monkeypatch,
                                                                      optimizer):
    frames = pan(4)
    config = make_config(**{**SETTINGS, "style": save_png(make_style(), tmp_path / "style.png"),
                            "optimizer": optimizer})
    built = []
    real_stage_run = video.api.stage_run
    monkeypatch.setattr(video.api, "stage_run",
                        lambda *args, **kwargs: built.append(1) or real_stage_run(*args, **kwargs))

    def stylised():
        built.clear()
        work = video.ShotWork(list(range(4)), frames)
        return [outcome.picture for outcome in video.stylise_shot(config, work)]

    reused = stylised()
    assert len(built) == 2  # the first frame's stage, and one for the three after it

    class Fresh(video.api.Reuse):
        def stage_run(self, *args, **kwargs):
            return video.api.stage_run(*args, **kwargs)  # always a new one

    monkeypatch.setattr(video.api, "Reuse", Fresh)
    alone = stylised()
    assert len(built) == 4
    for ours, theirs in zip(reused, alone, strict=True):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("when, done", [("flow", 1), ("encode", 3)])
def test_ctrl_c_between_frames_or_while_encoding_keeps_the_frames_for_resume(
        clip, tmp_path, monkeypatch, capsys, when, done):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    real = getattr(video, f"{'frame_flows' if when == 'flow' else 'encode'}")
    monkeypatch.setattr(video, real.__name__, interrupt)
    output = tmp_path / "styled.mp4"
    flags = ["tfstyle", f"--content={clip[0]}", f"--style={clip[1]}", f"--output={output}",
             *(f"--{name}={value}" for name, value in SETTINGS.items())]
    assert cli(flags) == 128 + signal.SIGINT
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"tfstyle: stopped by SIGINT; {done} frame(s) stylised, 0 done "
                            "before, of 3") and error.endswith("with --resume."), error
    assert not output.exists() and not list(tmp_path.glob(".tfstyle-*"))
    monkeypatch.setattr(video, real.__name__, real)
    assert cli([*flags, "--resume"]) == 0
    assert len(read(output)[1]) == 3
    assert steps_of(f"{output}{video.FRAMES_SUFFIX}", 3) == [3, 2, 2]


def test_a_clip_logs_each_frame_at_its_number(clip, tmp_path):
    video.run_video(config_for(clip, tmp_path / "frames", logdir=str(tmp_path / "logs"),
                               run_name="clip", image_every=2))
    events = read_events(tmp_path / "logs" / "clip")
    def values(tag):
        return {event.step: float(tf.make_ndarray(event.tensor_proto))
                for event in events.Tensors(tag)}
    assert values("frame/steps") == {0: 3.0, 1: 2.0, 2: 2.0}
    assert set(values("cost/total")) == {0, 1, 2}
    # Only the frames after the first are kept close to the one before.
    assert set(values("cost/temporal")) == {1, 2} and min(values("cost/temporal").values()) > 0
    assert [event.step for event in events.Tensors("generated")] == [0, 2]


def test_ray_stylises_each_shot_as_the_local_engine_does(tmp_path, local_ray):
    frames = pan(2) + pan(2, name="sample:starry_night")
    clip = (write_clip(tmp_path / "two_shots.mp4", frames),
            save_png(make_style(), tmp_path / "style.png"))
    local = video.run_video(config_for(clip, tmp_path / "local"))
    remote = video.run_video(config_for(clip, tmp_path / "ray", engine="ray",
                                        cpus_per_image=float(CPUS)))
    assert local.done == remote.done == 4 and not remote.failed
    for number in range(4):
        np.testing.assert_array_equal(pixels(video.frame_path(str(tmp_path / "local"), number)),
                                      pixels(video.frame_path(str(tmp_path / "ray"), number)))
    # The second shot starts afresh: the whole schedule, not --frame_steps.
    assert steps_of(tmp_path / "ray", 4) == [3, 2, 3, 2]


@pytest.mark.parametrize("data, words", [
    (b"not a video at all" * 20, "cannot be read as a video"),
    (b"", "cannot be read as a video"),
])
def test_a_broken_video_is_one_line(tmp_path, capsys, data, words):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(data)
    status = cli(["tfstyle", f"--content={broken}", "--style=sample:starry_night",
                  f"--output={tmp_path / 'out.mp4'}", "--quiet"])
    error = capsys.readouterr().err
    assert status == 2 and words in error and len(error.strip().splitlines()) == 1, error
    assert not (tmp_path / "out.mp4").exists()


def test_an_existing_video_is_not_replaced_without_overwrite(clip, tmp_path, capsys):
    output = tmp_path / "taken.mp4"
    output.write_bytes(b"someone's film")
    assert cli(["tfstyle", f"--content={clip[0]}", f"--style={clip[1]}",
                f"--output={output}", "--quiet"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert output.read_bytes() == b"someone's film"
