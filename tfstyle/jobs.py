"""Many images in one command: every image of a folder (or a glob) stylised with the same
settings, each as its own run at its own size, and written to OUTPUT_DIR/<name>.png with its
run record.

This module is the driver: it plans one job per image, skips the outputs an earlier run
finished, writes every result itself (atomically), shows progress over the images and writes
a summary beside the outputs. An engine runs the jobs: 'local' in this process, one after
another, with VGG19 loaded once; 'ray' as Ray tasks (tfstyle.cluster). A job is one image's
run_config without an output, so it hands back pixels: a worker on another machine needs no
shared file system, and only the driver writes files.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Iterator, Optional, Protocol, Sequence, Union

import numpy as np
from PIL import Image

from tfstyle import api, images, monitor
from tfstyle.config import MAX_RUN_NAME_BYTES, INITS, Config, objective_settings, split_paths
from tfstyle.errors import Terminated, UserError
from tfstyle.loop import NonFiniteCost

SUMMARY_NAME = "tfstyle-summary.json"
GLOB_CHARACTERS = "*?["
# What becomes of an image: written this run, already complete, no picture (with a reason),
# stopped by Ctrl-C (its picture so far written), or never started because of that.
STATUSES = ("done", "skipped", "failed", "interrupted", "cancelled")


@dataclasses.dataclass(frozen=True)
class Job:
    """One image's run."""
    input: str  # the content image, as found
    output: str  # where its picture goes
    config: Config  # its own run: this content image alone, no output (the driver writes)
    record: Config  # its output's run record: a run of this image alone, to this output
    replace: bool  # the output may be replaced: --overwrite, or this run's own unfinished one


@dataclasses.dataclass
class Outcome:
    """What a job hands back: its picture, or why there is none."""
    image: Optional[np.ndarray] = None  # [H, W, 3] in [0, 1]
    steps: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    stopped_by: str = ""  # the signal that stopped it, when one did
    error: str = ""
    worker: str = ""  # host:pid of the process that ran it


@dataclasses.dataclass
class ImageResult:
    """What became of one input image (status: one of STATUSES)."""
    input: str
    output: str
    status: str
    reason: str = ""
    steps: int = 0
    seconds: float = 0.0
    worker: str = ""  # host:pid of the process that ran it


@dataclasses.dataclass
class Summary:
    """A folder run: each image's result, the wall time, and the summary file written."""
    results: list[ImageResult]
    seconds: float
    engine: str
    stopped_by: str = ""  # "SIGINT" or "SIGTERM" when Ctrl-C or SIGTERM stopped it
    path: str = ""  # the JSON summary beside the outputs ("" when it could not be written)
    problem: str = ""  # why it could not

    def count(self, status: str) -> int:
        return sum(result.status == status for result in self.results)

    @property
    def images_per_hour(self) -> float:
        return self.count("done") * 3600 / max(self.seconds, 1e-9)

    def to_dict(self) -> dict:
        return {"engine": self.engine, "images": len(self.results),
                **{status: self.count(status) for status in STATUSES},
                "seconds": round(self.seconds, 3), "images_per_hour": round(self.images_per_hour, 1),
                "stopped_by": self.stopped_by,
                "results": [dataclasses.asdict(result) for result in self.results]}

    def line(self) -> str:
        counts = ", ".join(f"{self.count(status)} {status}" for status in STATUSES
                           if self.count(status) or status in ("done", "failed"))
        return (f"{len(self.results)} image(s): {counts} in {monitor.duration(self.seconds)} "
                f"({self.images_per_hour:.0f} images/h)"
                + (f"; summary in {self.path}" if self.path else ""))


class Engine(Protocol):
    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, Outcome]]:
        """Each job with its outcome, as they finish; closing the iterator cancels the rest."""

    def close(self) -> None: ...


def is_folder_run(content: str) -> bool:
    """Whether --content names many images: a directory, or a glob pattern (that is not an
    existing file's own name)."""
    return bool(content) and (os.path.isdir(content) or (
        any(character in content for character in GLOB_CHARACTERS)
        and not os.path.isfile(content)))


def find_inputs(pattern: str) -> list[str]:
    """The images of a directory (not of its sub-directories; no hidden files), or those a
    glob matches, sorted: the files with an extension Pillow reads. A file of that kind that
    turns out unreadable is an input too, and is then reported, not silently left out."""
    if os.path.isdir(pattern):
        try:
            names = os.listdir(pattern)
        except OSError as error:
            raise UserError(f"Cannot list the directory '{pattern}' "
                            f"({error.strerror or error}).") from None
        candidates = [os.path.join(pattern, name) for name in names if not name.startswith(".")]
    else:
        candidates = glob.glob(pattern)
    Image.init()
    readable = {extension for extension, kind in Image.registered_extensions().items()
                if kind in Image.OPEN}
    found = sorted(path for path in candidates
                   if Path(path).suffix.lower() in readable and not os.path.isdir(path))
    if not found:
        where = "The directory" if os.path.isdir(pattern) else "The pattern"
        raise UserError(f"{where} '{pattern}' holds no image files (.jpg, .png, ...).")
    return found


def comparable(config: Config) -> dict:
    """What a finished output must share with this run to be taken as this run's work: the
    settings that change the picture and the steps, as a run record stores them."""
    recorded = json.loads(json.dumps(monitor.recorded_config(config)))
    return {name: recorded[name] for name in (*objective_settings(), "steps")}


def previous_output(path: str, record: Config) -> str:
    """What is at `path` already: 'absent', 'complete' (this run's settings, all steps),
    'unfinished' (this run's settings, stopped early) or 'other'."""
    if not os.path.lexists(path):
        return "absent"
    try:
        recorded = monitor.recorded_settings(path)
        step = json.loads(images.read_png_text(path)[monitor.RECORD_KEY])["step"]
    except (UserError, ValueError, KeyError, TypeError):
        return "other"
    expected = comparable(record)
    settings = {name: recorded.get(name) for name in expected}
    if json.loads(json.dumps(settings)) != expected:
        return "other"
    # A trained network's picture has no steps: it is done once written.
    return "complete" if step == (0 if record.model else record.total_steps) else "unfinished"


def plan(config: Config, inputs: Sequence[str]) -> tuple[list[Job], list[ImageResult]]:
    """A job for each input that needs one, and the results of those that do not: complete
    outputs (skipped) and outputs that may not be written (failed, with the reason)."""
    names = images.unique_names([images.image_name(path, position)
                                 for position, path in enumerate(inputs)])
    jobs, settled = [], []
    for path, name in zip(inputs, names):
        output = os.path.join(config.output, f"{name}.png")
        run_name = f"{config.run_name}-{name}" if config.run_name else name
        # A file name may take 255 bytes (85 CJK characters), a run name fewer.
        run_name = run_name.encode()[:MAX_RUN_NAME_BYTES].decode(errors="ignore")
        job_config = config.replace(
            content=path, output="", overwrite=False, resume=False, checkpoint_every=0,
            save_every=0, run_name=run_name)
        record = config.replace(content=path, output=output)
        found = "absent" if config.overwrite else previous_output(output, record)
        if found == "complete":
            settled.append(ImageResult(path, output, "skipped", "complete"))
            continue
        try:
            images.check_output_path(output, overwrite=config.overwrite or found != "absent")
        except UserError as error:
            settled.append(ImageResult(path, output, "failed", str(error)))
            continue
        if found == "other":
            settled.append(ImageResult(path, output, "failed", f"'{output}' exists and was not "
                                       "made with these settings; pass --overwrite to replace "
                                       "it."))
        else:
            jobs.append(Job(path, output, job_config, record,
                            replace=config.overwrite or found == "unfinished"))
    return jobs, settled


def run_job(config: Config) -> Outcome:
    """One image's run in this process. Its failure (a bad image, a cost gone NaN, even a bug)
    is the outcome's error, not an exception, so that the other images go on; a cost gone NaN
    still hands back the last finite picture, for the driver to write."""
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        result = api.run_config(config)
    except NonFiniteCost as error:
        return Outcome(None if error.image is None else error.image[0], error.kept or 0,
                       error=str(error), worker=worker)
    except UserError as error:
        return Outcome(error=str(error), worker=worker)
    except Exception as error:  # one image's bug should not cost the others their run
        return Outcome(error=f"internal error ({type(error).__name__}: {error}); please report it.",
                       worker=worker)
    return Outcome(result.image[0], result.steps, result.seconds, result.interrupted,
                   result.stopped_by, worker=worker)


class LocalEngine:
    """The jobs one after another in this process: VGG19 is loaded once (features caches it),
    and Ctrl-C stops the image in progress as it stops a single run, its picture written."""

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, Outcome]]:
        for job in jobs:
            yield job, run_job(job.config)

    def close(self) -> None:
        pass


def make_engine(config: Config) -> Engine:
    if config.engine == "ray":
        from tfstyle import cluster  # Ray is an optional extra
        return cluster.RayEngine(config)
    return LocalEngine()


class ImageProgress:
    """A line per image as it finishes: a bar over the images, the rate and the ETA."""

    WIDTH = 20

    def __init__(self, total: int, settled: int, unit: str = "images") -> None:
        self.total, self.finished, self.ran, self.done = total, settled, 0, 0
        self.unit = unit
        self.start = time.perf_counter()

    def __call__(self, result: ImageResult) -> None:
        self.finished += 1
        self.ran += 1
        self.done += result.status == "done"
        elapsed = time.perf_counter() - self.start
        rate = self.done * 3600 / max(elapsed, 1e-9)
        left = (self.total - self.finished) * elapsed / self.ran
        filled = self.WIDTH * self.finished // self.total
        reason = " ".join(result.reason.split())
        note = (f": {reason if len(reason) <= 100 else reason[:97] + '...'}"
                if result.status == "failed" else "")
        print(f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {self.finished}/{self.total} "
              f"{self.unit}, {rate:.0f}/h, ETA {monitor.duration(left)}: "
              f"{Path(result.input).name} {result.status}{note}", flush=True)


def check_folder_run(config: Config) -> None:
    """Refuse a folder run that cannot work, before any image is started."""
    if not config.output:
        raise UserError("Say where the pictures go with --output=DIRECTORY.")
    output = config.output
    if os.path.exists(output) and not os.path.isdir(output):
        raise UserError(f"--output '{output}' is a file; a folder run writes into a directory.")
    if not os.path.exists(output) and Path(output).suffix.lower() in Image.registered_extensions():
        raise UserError(f"--output '{output}' looks like an image file's name; a folder run "
                        "writes one picture per image into a directory: give its name.")
    if config.resume or config.checkpoint_every:
        raise UserError("A folder run restarts image by image: run the same command again "
                        "(without --resume or --checkpoint_every) and it skips the images "
                        "already done.")
    if config.engine == "ray":
        from tfstyle import cluster
        cluster.import_ray()
    for path in (*split_paths(config.style), *split_paths(config.style_masks),
                 *([] if config.init in INITS else [config.init])):
        images.load_image(path)  # a bad style would fail every image: say so once
    if config.model:  # a bad model would fail every image: say so once
        from tfstyle import fast
        fast.load_model(config.model).check_run(config, len(split_paths(config.style)))
    elif not config.style:
        raise UserError("A style image is needed (--style).")


def check_apart(paths: Sequence[str], output: str) -> None:
    """Refuse inputs inside the output directory: the pictures would be taken for photos by
    the next run, and --overwrite could replace a photo with its own picture."""
    directory = os.path.realpath(output)
    inside = [path for path in paths if os.path.dirname(os.path.realpath(path)) == directory]
    if inside:
        raise UserError(f"--output '{output}' holds input images ('{inside[0]}'); the pictures "
                        "would land among the photos. Choose another directory.")


def write_summary(summary: Summary, directory: str) -> None:
    """The summary as JSON beside the outputs, written atomically; when it cannot be, the
    summary says why instead (the pictures are written already)."""
    path = os.path.join(directory, SUMMARY_NAME)
    temp = ""
    try:
        fd, temp = images.temporary_file(directory, images.TEMP_PREFIX, ".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(summary.to_dict(), file, indent=2)
        os.replace(temp, path)
        summary.path = path
    except OSError as error:
        if temp and os.path.exists(temp):
            os.unlink(temp)
        summary.problem = f"Could not write the summary '{path}' ({error.strerror or error})."


def run_many(config: Config, inputs: Union[None, str, Sequence[str]] = None) -> Summary:
    """Stylise every image of `inputs` (a directory, a glob, or a list of paths; default:
    config.content) with `config`, each as its own run, into the directory config.output as
    <name>.png with its run record; see the module's docstring. Returns the summary, also
    written as SUMMARY_NAME beside the outputs."""
    start = time.perf_counter()
    pattern = config.content if inputs is None else inputs
    check_folder_run(config)
    paths = (find_inputs(pattern) if isinstance(pattern, str)
             else [str(path) for path in pattern])
    check_apart(paths, config.output)
    try:
        os.makedirs(config.output, exist_ok=True)
    except OSError as error:
        raise UserError(f"Cannot make the output directory '{config.output}' "
                        f"({error.strerror or error}).") from None
    if config.logdir:
        monitor.prepare_logdir(config.logdir)
    jobs, results = plan(config, paths)
    engine = make_engine(config) if jobs else LocalEngine()
    progress = ImageProgress(len(paths), len(results))
    skipped = sum(result.status == "skipped" for result in results)
    if skipped:
        print(f"{skipped} of {len(paths)} image(s) done already, with these settings: skipping "
              "them.", flush=True)
    stopped_by = ""
    running = engine.run(jobs)
    try:
        for job, outcome in running:
            result = finish(job, outcome)
            results.append(result)
            progress(result)
            if outcome.interrupted:  # (a Ray task that is stopped is run again instead)
                stopped_by = outcome.stopped_by or "SIGINT"
                break
    except KeyboardInterrupt as interrupt:
        stopped_by = "SIGTERM" if isinstance(interrupt, Terminated) else "SIGINT"
    finally:
        running.close()
        engine.close()
    ended = {result.input for result in results}
    results += [ImageResult(job.input, job.output, "cancelled", "stopped before it finished")
                for job in jobs if job.input not in ended]
    order = {path: position for position, path in enumerate(paths)}
    results.sort(key=lambda result: order[result.input])
    summary = Summary(results, time.perf_counter() - start, config.engine, stopped_by)
    write_summary(summary, config.output)
    return summary


def finish(job: Job, outcome: Outcome) -> ImageResult:
    """Write a job's picture (the driver writes every output) and say what became of it."""
    problem = outcome.image is not None and api.write_output(
        outcome.image, job.output, job.record, outcome.steps, overwrite=job.replace)
    status = ("failed" if outcome.error or problem else
              "interrupted" if outcome.interrupted else "done")
    reason = " ".join(filter(None, (outcome.error, problem or "")))
    return ImageResult(job.input, job.output, status, reason, outcome.steps,
                       round(outcome.seconds, 3), outcome.worker)


def exit_status(summary: Summary) -> int:
    """0 when every image is done or was already; 128 + the signal when stopped; else 2."""
    if summary.stopped_by:
        return 128 + int(getattr(signal, summary.stopped_by))
    return 2 if summary.count("failed") or summary.problem else 0


def report(summary: Summary) -> None:
    """The end of a folder run on the terminal: the summary and every failure on a line."""
    for result in summary.results:
        if result.status == "failed":
            print(f"tfstyle: failed: {result.input}: {' '.join(result.reason.split())}",
                  file=sys.stderr)
    if summary.problem:
        print(f"tfstyle: error: {summary.problem}", file=sys.stderr)
    print(summary.line(), flush=True)
