"""Video: a clip's frames stylised in order, each after the first starting from the previous
stylised frame warped along the optical flow and kept close to it where the flow can be
trusted (Ruder et al. 2016, "Artistic style transfer for videos"); shots cut apart, so that
each is an independent sequence (and a Ray task).

A run's work lives in a frames folder (OUTPUT.frames/ beside an output video, or the output
folder itself when frames go out): one PNG per stylised frame, named by its number in the
source and written atomically with its run record, the optical flow of each frame (cached,
flow/), and manifest.json (what the run is: source, frames, size, settings). A frame's PNG is
only ever complete, so --resume continues each shot at its first missing frame, from the
previous frame's PNG, exactly where the uninterrupted run would be.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
from absl import logging
from PIL import Image

from tfstyle import api, flow, images, jobs, monitor
from tfstyle.config import Config
from tfstyle.errors import Terminated, UserError
from tfstyle.objective import Temporal

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg")
FRAMES_SUFFIX = ".frames"
MANIFEST = "manifest.json"
# A cut: two consecutive frames whose colours differ by more than this (the total variation
# distance between their 16-bin histograms per channel, averaged over R, G and B; 0 the same
# colours, 1 none in common). Histograms ignore where things are, so a fast pan is no cut.
CUT_THRESHOLD = 0.25
HISTOGRAM_BINS = 16
THUMBNAIL = (64, 64)
# Frames in, frames out have no frame rate of their own; a video made of them gets this one.
FOLDER_FPS = 25.0


def is_video(path: str) -> bool:
    return bool(path) and Path(str(path)).suffix.lower() in VIDEO_EXTENSIONS


def is_clip_run(config: Config) -> bool:
    """Whether the run stylises a clip: a video file, or a folder of frames with --video."""
    return is_video(config.content) or (config.video and jobs.is_folder_run(config.content))


@dataclasses.dataclass
class Clip:
    """The frames a run stylises, at the output's size."""
    frames: list[np.ndarray]  # uint8 [H, W, 3]
    numbers: list[int]  # each frame's number in the source, from 0
    fps: float  # of the output: the source's over --every_nth_frame
    audio: bool  # the source has sound that lines up with these frames

    @property
    def size(self) -> tuple[int, int]:
        height, width = self.frames[0].shape[:2]
        return width, height


def _ffmpeg() -> Any:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise UserError("Video needs imageio-ffmpeg: pip install 'tfstyle[video]'.") from None
    return imageio_ffmpeg


def _selected(config: Config, count: Optional[int] = None) -> range:
    end = config.end_frame or (count if count is not None else sys.maxsize)
    if count is not None:
        end = min(end, count)
    return range(config.start_frame, end, config.every_nth_frame)


def read_clip(config: Config) -> Clip:
    """The frames --start_frame, --end_frame and --every_nth_frame select from --content (a
    video file, or a folder or glob of frames in name order), resized to the output's size."""
    source = config.content
    if is_video(source):
        frames, numbers, fps, audio = _read_video(source, config)
    else:
        paths = jobs.find_inputs(source)
        numbers = list(_selected(config, len(paths)))
        frames = [np.asarray(images.load_image(paths[number])) for number in numbers]
        fps, audio = FOLDER_FPS, False
        if frames:
            api.check_aspect_ratios([paths[number] for number in numbers],
                                    [Image.fromarray(frame) for frame in frames], "content image")
    if not frames:
        raise UserError(f"'{source}' has no frames from --start_frame={config.start_frame}"
                        + (f" to --end_frame={config.end_frame}" if config.end_frame else "")
                        + ".")
    height, width = frames[0].shape[:2]
    size = images.fit_size((width, height), config.max_size, config.image_size)
    resized = [np.asarray(Image.fromarray(frame).resize(size, Image.LANCZOS)) if
               frame.shape[1::-1] != size else frame for frame in frames]
    whole = config.start_frame == 0 and config.every_nth_frame == 1
    return Clip(resized, numbers, fps / config.every_nth_frame, audio and whole)


def _read_video(path: str, config: Config) -> tuple[list[np.ndarray], list[int], float, bool]:
    if not os.path.isfile(path):
        raise UserError(f"The video '{path}' does not exist." if not os.path.exists(path)
                        else f"'{path}' is not a file.")
    reader = _ffmpeg().read_frames(path)
    try:
        meta = next(reader)
        width, height = meta["size"]
        wanted = _selected(config)
        frames, numbers = [], []
        for number, data in enumerate(reader):
            if number >= wanted.stop:
                break
            if number in wanted:
                frames.append(np.frombuffer(data, np.uint8).reshape(height, width, 3).copy())
                numbers.append(number)
    except (OSError, RuntimeError, ValueError, StopIteration, KeyError) as error:
        first = next((line for line in str(error).splitlines() if line.strip()), "")
        raise UserError(f"'{path}' cannot be read as a video ({first.strip().rstrip('.')}).") \
            from None
    finally:
        reader.close()
    return frames, numbers, float(meta.get("fps") or FOLDER_FPS), bool(meta.get("audio_codec"))


def shots(frames: Sequence[np.ndarray]) -> list[range]:
    """The clip cut where consecutive frames' colours differ by more than CUT_THRESHOLD:
    the positions of each shot."""
    def histogram(frame: np.ndarray) -> np.ndarray:
        small = np.asarray(Image.fromarray(frame).resize(THUMBNAIL, Image.BOX))
        counts = [np.histogram(small[..., channel], HISTOGRAM_BINS, (0, 256))[0]
                  for channel in range(3)]
        return np.stack(counts) / small[..., 0].size

    colours = [histogram(frame) for frame in frames]
    cuts = [position for position in range(1, len(frames))
            if 0.5 * np.abs(colours[position] - colours[position - 1]).sum(axis=1).mean()
            > CUT_THRESHOLD]
    starts = [0, *cuts]
    return [range(start, end) for start, end in zip(starts, [*cuts, len(frames)])]


@dataclasses.dataclass
class ShotWork:
    """What stylising one shot from its first unfinished frame needs (it travels to a Ray
    worker): the frames left, the source frame before the first and its stylised version (None:
    the shot starts here), and where the flows are cached (the driver's frames folder: a worker
    that cannot see it computes them again, which costs far less than a frame's steps)."""
    numbers: list[int]
    frames: list[np.ndarray]  # uint8 [H, W, 3]
    before: Optional[np.ndarray] = None  # uint8 [H, W, 3]
    previous: Optional[np.ndarray] = None  # uint8 [H, W, 3]
    folder: str = ""


@dataclasses.dataclass
class FrameOutcome:
    number: int
    picture: Optional[np.ndarray] = None  # uint8 [H, W, 3]; None: stopped before its end
    steps: int = 0
    stopped_by: str = ""
    costs: dict[str, float] = dataclasses.field(default_factory=dict)
    seconds: float = 0.0


def frame_config(config: Config, first: bool) -> Config:
    """A shot's first frame runs the whole schedule, with --first_frame_steps at the last
    scale; a later one --frame_steps at the output's size alone, as it starts from a picture
    that is already stylised."""
    settings = config.replace(output="", logdir="", quiet=True, resume=False, save_every=0,
                              checkpoint_every=0, overwrite=False)
    if first:
        return settings.replace(steps=config.first_frame_steps or config.steps)
    return settings.replace(scales=1, steps=config.frame_steps)


def stylise_shot(config: Config, work: ShotWork) -> Iterator[FrameOutcome]:
    """Each frame of `work` stylised in order, as it is done; a run stopped by Ctrl-C or
    SIGTERM yields the frame without a picture and ends."""
    previous = None if work.previous is None else work.previous.astype(np.float32) / 255.0
    before = work.before
    reuse = api.Reuse()  # VGG19 built once, and the later frames' step compiled once
    for number, frame in zip(work.numbers, work.frames):
        content = frame.astype(np.float32) / 255.0
        if previous is None or before is None:
            result = api.run_config(frame_config(config, True), [content], reuse=reuse)
        else:
            forward, backward = frame_flows(work.folder, number, before, frame)
            warped = np.clip(flow.warp(previous, backward), 0.0, 1.0)
            weights = flow.consistency_weights(forward, backward)
            result = api.run_config(frame_config(config, False), [content],
                                    init_picture=warped, reuse=reuse,
                                    temporal=Temporal(warped[None], weights[None]))
        if result.interrupted:
            yield FrameOutcome(number, stopped_by=result.stopped_by)
            return
        picture = np.asarray(images.to_pil(result.image[0]))
        yield FrameOutcome(number, picture, result.steps,
                           costs=result.history[-1] if result.history else {},
                           seconds=result.seconds)
        previous = picture.astype(np.float32) / 255.0
        before = frame


def flicker(pictures: Sequence[np.ndarray],
            flows: Sequence[Optional[tuple[np.ndarray, np.ndarray]]]) -> float:
    """Mean absolute difference (in [0, 1]) between each stylised frame and the one before it
    warped along the flow, over the pixels the flow can follow (consistency weights 1): what
    the eye sees as flicker. `flows[i]` is (forward, backward) between frames i − 1 and i."""
    total, count = 0.0, 0.0
    for position in range(1, len(pictures)):
        if flows[position] is None:  # a cut
            continue
        forward, backward = flows[position]
        before = pictures[position - 1].astype(np.float32) / 255.0
        now = pictures[position].astype(np.float32) / 255.0
        weights = flow.consistency_weights(forward, backward)
        total += float(np.sum(np.abs(now - flow.warp(before, backward)) * weights[..., None]))
        count += 3.0 * float(np.sum(weights))
    return total / max(count, 1.0)


# --- a run's folder ---

def frames_folder(config: Config) -> str:
    return config.output + FRAMES_SUFFIX if is_video(config.output) else config.output


def frame_path(folder: str, number: int) -> str:
    return os.path.join(folder, f"{number:06d}.png")


def _manifest(config: Config, clip: Clip) -> dict[str, Any]:
    settings = jobs.comparable(config)
    settings.update({name: getattr(config, name) for name in (
        "first_frame_steps", "frame_steps", "scales", "scale_steps", "start_frame", "end_frame",
        "every_nth_frame")})
    return json.loads(json.dumps({"source": os.path.abspath(config.content),
                                  "frames": clip.numbers, "size": clip.size,
                                  "settings": settings}))


def prepare_folder(config: Config, clip: Clip) -> str:
    """The run's frames folder, made or checked: an earlier run's is continued with --resume
    (if it is the same run), started over with --overwrite (its frames and flows removed, and
    nothing else), and otherwise left alone with an error."""
    folder = frames_folder(config)
    manifest = _manifest(config, clip)
    path = os.path.join(folder, MANIFEST)
    if os.path.isfile(path):
        try:
            earlier = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            earlier = None
        if config.overwrite:
            for name in os.listdir(folder):
                if name.endswith(".png") and name[:-4].isdigit():
                    os.remove(os.path.join(folder, name))
            shutil.rmtree(os.path.join(folder, "flow"), ignore_errors=True)
        elif not config.resume:
            raise UserError(f"'{folder}' holds the frames of an earlier run; pass --resume to "
                            "continue it or --overwrite to start over.")
        elif earlier != manifest:
            raise UserError(f"'{folder}' holds the frames of a run with other inputs or "
                            "settings; --resume continues only the same run (pass --overwrite "
                            "to start over).")
    elif os.path.isdir(folder) and os.listdir(folder):
        raise UserError(f"'{folder}' exists and is not a tfstyle frames folder; choose another "
                        "--output.")
    elif os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError(f"'{folder}' exists and is not a directory; choose another --output.")
    try:
        os.makedirs(os.path.join(folder, "flow"), exist_ok=True)
        temp = path + ".tmp"
        Path(temp).write_text(json.dumps(manifest))
        os.replace(temp, path)
    except OSError as error:
        raise UserError(f"Cannot write to '{folder}' ({error.strerror or error}).") from None
    return folder


def frame_flows(folder: str, number: int, before: np.ndarray, frame: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """(forward, backward) optical flow between frame `number` and the one `before` it, from
    the frames folder's flow/ where a run left them, else computed and kept there (when that
    folder is at hand; `folder` "": computed only)."""
    path = os.path.join(folder, "flow", f"{number:06d}.npz")
    if folder:
        try:
            with np.load(path) as saved:
                return saved["forward"], saved["backward"]
        except (OSError, ValueError, KeyError):
            pass
    pair = flow.optical_flow(before, frame), flow.optical_flow(frame, before)
    if folder and os.path.isdir(os.path.dirname(path)):
        temp = f"{path[:-4]}.{os.getpid()}.tmp.npz"
        try:
            np.savez(temp, forward=pair[0], backward=pair[1])
            os.replace(temp, path)
        except OSError:  # a full disk: the flow is computed again next time
            if os.path.exists(temp):
                os.remove(temp)
    return pair


def clip_flows(folder: str, clip: Clip, cut: Sequence[range]
               ) -> list[Optional[tuple[np.ndarray, np.ndarray]]]:
    """Every frame's frame_flows (None at the start of a shot), for measuring flicker."""
    starts = {shot.start for shot in cut}
    return [None if position in starts else
            frame_flows(folder, number, clip.frames[position - 1], clip.frames[position])
            for position, number in enumerate(clip.numbers)]


def shot_work(folder: str, clip: Clip, shot: range) -> Optional[ShotWork]:
    """The shot from its first frame without a PNG (None: all are done)."""
    done = [os.path.isfile(frame_path(folder, clip.numbers[position])) for position in shot]
    if all(done):
        return None
    first = shot.start + done.index(False)
    before = previous = None
    if first > shot.start:
        before = clip.frames[first - 1]
        previous = np.asarray(images.load_image(frame_path(folder, clip.numbers[first - 1])))
    positions = range(first, shot.stop)
    return ShotWork([clip.numbers[p] for p in positions], [clip.frames[p] for p in positions],
                    before, previous, folder)


def encode(path: str, frames: Iterator[np.ndarray], size: tuple[int, int], fps: float,
           audio_from: str = "") -> None:
    """uint8 frames [H, W, 3] of `size` encoded (H.264) to `path`, with the sound of the file
    `audio_from` if given (cut to the frames' length); written beside it first, then moved in
    place, so that a failure leaves no half video."""
    ffmpeg = _ffmpeg()
    temp = os.path.join(os.path.dirname(os.path.abspath(path)),
                        f".tfstyle-{os.getpid()}-{Path(path).name}")
    audio = {"audio_path": audio_from, "audio_codec": "aac"} if audio_from else {}
    try:
        writer = ffmpeg.write_frames(temp, size, fps=fps, quality=8, macro_block_size=2,
                                     output_params=["-shortest"] if audio_from else None,
                                     ffmpeg_log_level="error", **audio)
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame, np.uint8).tobytes())
        writer.close()
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise


def write_video(folder: str, clip: Clip, config: Config) -> None:
    """The stylised frames encoded to --output, the source's audio copied when the frames are
    the whole clip at its own rate."""
    pictures = (np.asarray(Image.open(frame_path(folder, number)).convert("RGB"))
                for number in clip.numbers)
    try:
        encode(config.output, pictures, clip.size, clip.fps,
               config.content if clip.audio else "")
    except (OSError, RuntimeError) as error:
        first = next((line for line in str(error).splitlines() if line.strip()), "")
        raise UserError(f"Could not write the video '{config.output}' ({first.strip()}); the "
                        f"stylised frames are in '{folder}'.") from None


def pan(picture: Image.Image, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """A sample clip: `count` frames of `size` = (W, H), a window moving steadily from the
    left to the right of `picture` (resized to the window's height plus a half)."""
    width, height = size
    scale = 1.5 * height / picture.height
    wide = picture.resize((max(width + count, round(picture.width * scale)), round(1.5 * height)),
                          Image.LANCZOS)
    pixels = np.asarray(wide.convert("RGB"))
    top = (pixels.shape[0] - height) // 2
    travel = pixels.shape[1] - width
    return [pixels[top:top + height, left:left + width].copy() for left in
            np.linspace(0, travel, count).round().astype(int)]


# --- the run ---

@dataclasses.dataclass
class ClipSummary:
    frames: int
    done: int  # stylised in this run
    skipped: int  # stylised by an earlier run
    seconds: float
    stopped_by: str = ""
    failed: str = ""  # why a shot failed (Ray)


def run_video(config: Config) -> ClipSummary:
    """Stylise the clip --content to --output (a video file, or a folder of frames), shot
    by shot, frames in order within a shot; with --engine=ray the shots in parallel. Ctrl-C
    or SIGTERM stops it with the frames done so far kept for --resume."""
    if not config.output:
        raise UserError("Say where to write the stylised clip with --output=CLIP.mp4 (or a "
                        "folder for frames).")
    if is_video(config.output) and os.path.exists(config.output) and not (
            config.overwrite or config.resume):
        raise UserError(f"'{config.output}' exists; pass --overwrite to replace it.")
    if config.logdir:
        monitor.prepare_logdir(config.logdir)
    start = time.perf_counter()
    clip = read_clip(config)
    folder = prepare_folder(config, clip)
    cut = shots(clip.frames)
    logging.info("%d frame(s) of %dx%d in %d shot(s) at %.3g frames/s%s.", len(clip.numbers),
                 *clip.size, len(cut), clip.fps, "" if clip.audio else ", no audio copied")
    work = [item for item in (shot_work(folder, clip, shot) for shot in cut) if item]
    left = sum(len(item.numbers) for item in work)
    summary = ClipSummary(len(clip.numbers), 0, len(clip.numbers) - left, 0.0)
    log = None
    try:
        if config.logdir and work:
            log = monitor.ClipLog(config, clip.size, clip.numbers[-1] + 1, _style_arrays(config))
        _stylise(config, folder, work, summary, log)
        if not summary.stopped_by and not summary.failed and is_video(config.output):
            write_video(folder, clip, config)
    except KeyboardInterrupt as interrupt:  # between frames, or while encoding
        summary.stopped_by = "SIGTERM" if isinstance(interrupt, Terminated) else "SIGINT"
    finally:
        if log:
            log.close()
    summary.seconds = time.perf_counter() - start
    if log and log.failure:
        raise UserError(f"{log.failure}.")
    return summary


def _style_arrays(config: Config) -> list[np.ndarray]:
    """The style images [1, h, w, 3] at most --max_size a side, for the log."""
    styles = [images.load_image(path) for path in api.names(config.style)]
    return [images.to_array(style, images.fit_size(style.size, config.max_size))[None]
            for style in styles]


def _stylise(config: Config, folder: str, work: Sequence[ShotWork], summary: ClipSummary,
             log: Optional[monitor.ClipLog]) -> None:
    """The frames of `work` stylised and written to `folder` as they come, counted in
    `summary` (and logged in `log`), with a progress bar over the clip's frames."""
    progress = jobs.ImageProgress(summary.frames, summary.skipped, unit="frames")
    outcomes = (_ray_outcomes(config, work) if config.engine == "ray"
                else (outcome for item in work for outcome in stylise_shot(config, item)))
    try:
        for outcome in outcomes:
            if isinstance(outcome, str):  # a shot's task failed
                summary.failed = summary.failed or outcome
                continue
            if outcome.picture is None:
                summary.stopped_by = outcome.stopped_by
                break
            path = frame_path(folder, outcome.number)
            images.save_image(outcome.picture.astype(np.float32) / 255.0, path,
                              monitor.run_record(config.replace(output=path), outcome.steps))
            summary.done += 1
            progress(jobs.ImageResult(f"frame {outcome.number}", path, "done"))
            if log:
                log.frame(outcome.number, outcome.costs, outcome.steps, outcome.seconds,
                          outcome.picture)
    finally:
        close = getattr(outcomes, "close", None)
        if close:
            close()


def _ray_outcomes(config: Config, work: Sequence[ShotWork]) -> Iterator[Any]:
    """Each shot a Ray task that streams its frames back as they are done; the frames of all
    shots as they arrive (a failed task: why, as a string)."""
    from tfstyle import cluster
    engine = cluster.RayEngine(config)
    ray = engine.ray
    task = ray.remote(cluster.run_shot).options(num_cpus=config.cpus_per_image,
                                                num_gpus=config.gpus_per_image,
                                                num_returns="streaming")
    shared = ray.put(cluster.packed_inputs(config, ("style", "style_masks", "init", "weights")))
    threads = max(1, int(np.ceil(config.cpus_per_image)))
    streams = [task.remote(config, shared, item, threads) for item in work]
    try:
        while streams:
            ready, _ = ray.wait(streams, num_returns=1)
            for stream in ready:
                try:
                    yield ray.get(next(stream))
                except StopIteration:
                    streams.remove(stream)
                except ray.exceptions.RayError as error:
                    streams.remove(stream)
                    first = next((line for line in str(error).splitlines() if line.strip()), "")
                    yield f"a shot's Ray task failed ({type(error).__name__}: {first[:200]})"
    finally:
        for stream in streams:
            ray.cancel(stream, force=True)
        engine.close()
