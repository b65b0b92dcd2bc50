"""Watching a run: TensorBoard logs, a progress bar, and the run record stored in the PNG.

Summaries are written from the Python loop, with the floats the compiled step already
returned, not from inside the step: summary ops cannot be XLA-compiled (the step runs with
jit_compile=True), and the loop converts the costs to floats anyway, so logging there needs
no second forward pass and no extra device round trip.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time
from typing import Any, Callable, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tensorboard.plugins.hparams import api as hparams_api

from tfstyle import images
from tfstyle.checkpoints import describe_error
from tfstyle.config import (Config, absent_settings, hparam_settings, input_paths,
                            make_config, upgrade_settings)
from tfstyle.errors import UserError
from tfstyle.loop import Iterate, Result
from tfstyle.schedule import Stage

RECORD_KEY = "tfstyle"  # PNG text chunk holding the run record (JSON)
IMAGES_PER_RUN = 5  # generated images in TensorBoard when --image_every is 0
PROGRESS_LINES = 10  # plain progress lines per run when stdout is not a terminal
SHOWN_COSTS = ("total", "content", "style")  # the progress bar has no room for every layer


def version() -> str:
    import tfstyle  # at call time: tfstyle/__init__ imports this module before __version__
    return tfstyle.__version__


# --- The run record -----------------------------------------------------------------------

# How a run was started and where it ran, not how its image was made.
SESSION_SETTINGS = ("overwrite", "resume", "engine", "ray_address", "cpus_per_image",
                    "gpus_per_image")


def recorded_config(config: Config) -> dict[str, Any]:
    """The settings as stored in an output: input paths made absolute so a re-run works from
    any directory (only file names, and no log directory, with --norecord_paths); style layer
    weights as pairs, because the text form rounds them."""
    settings = dataclasses.asdict(config)
    for name in SESSION_SETTINGS:
        settings.pop(name)
    settings.update(input_paths(config, absolute=config.record_paths))
    if not config.record_paths:
        settings["output"] = os.path.basename(config.output)
        settings["logdir"] = ""
        if os.path.exists(config.weights):
            settings["weights"] = os.path.basename(config.weights)
    return settings


def run_record(config: Config, step: int) -> dict[str, str]:
    """PNG text chunks describing how the image written after `step` steps was made."""
    record = {"version": version(), "step": step, "config": recorded_config(config)}
    return {RECORD_KEY: json.dumps(record), "Software": f"tfstyle {version()}"}


def recorded_settings(path: str) -> dict[str, Any]:
    """The settings recorded in a PNG that tfstyle wrote, as Config field values. A record is
    untrusted input (anyone can edit a PNG's text chunks): its values are checked as flags
    are, and how a run is started (--overwrite, --resume) is never taken from it."""
    if os.path.isdir(path):
        raise UserError(f"--from_image '{path}' is a directory; give a PNG that tfstyle wrote.")
    text = images.read_png_text(path)
    if RECORD_KEY not in text:
        raise UserError(f"'{path}' carries no tfstyle run record; only PNGs written by tfstyle "
                        "can be re-run.")
    damaged = f"The tfstyle run record in '{path}' is damaged"
    try:
        record = json.loads(text[RECORD_KEY])
        settings = dict(record["config"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{damaged}.") from None
    for name in SESSION_SETTINGS:
        settings.pop(name, None)
    unknown = sorted(set(settings) - {field.name for field in dataclasses.fields(Config)}
                     - {"content_layer"})  # (the older form, upgraded below)
    if unknown:
        version = record.get("version") if isinstance(record.get("version"), str) else "?"
        raise UserError(f"'{path}' was written by tfstyle {version[:20]} with setting(s) "
                        f"{', '.join(name[:40] for name in unknown[:3])}"
                        f"{' and more' if len(unknown) > 3 else ''} that this version does not "
                        "know.")
    try:
        settings = upgrade_settings(settings)
        # A setting added since the record was written did then what its absent value does now.
        settings = {**absent_settings(), **settings}
        make_config(settings.get("preset", "default"),
                    **{name: value for name, value in settings.items() if name != "preset"})
    except UserError as error:
        raise UserError(f"{damaged}: {error}") from None
    return settings


def read_run_record(path: str) -> Config:
    """The Config that made the PNG at `path`."""
    settings = recorded_settings(path)
    return make_config(settings.pop("preset", "default"), **settings)


def flag_lines(config: Config) -> list[str]:
    """The config as command-line flags, one per line, ready for --flagfile (input paths
    absolute, as in the run record)."""
    lines = []
    for name, value in recorded_config(config).items():
        if isinstance(value, bool):
            lines.append(f"--{'' if value else 'no'}{name}")
        elif name in ("style_layers", "content_layers"):
            lines.append(f"--{name}=" + ",".join(f"{layer}={weight!r}" for layer, weight in value))
        elif name == "scale_steps":
            lines.append("--scale_steps=" + ",".join(str(steps) for steps in value))
        elif name == "style_weights":
            lines.append("--style_weights=" + ",".join(repr(weight) for weight in value))
        else:
            lines.append(f"--{name}={value}")
    return lines


# --- TensorBoard --------------------------------------------------------------------------

def _unusable_logdir(logdir: str, error: OSError) -> UserError:
    return UserError(f"Cannot use --logdir '{logdir}': {error.strerror or error}.")


def prepare_logdir(logdir: str) -> None:
    """Create --logdir up front, so a bad one is refused before any expensive work."""
    try:
        os.makedirs(logdir, exist_ok=True)
    except OSError as error:
        raise _unusable_logdir(logdir, error) from None
    if not os.access(logdir, os.W_OK):
        raise UserError(f"Cannot use --logdir '{logdir}': it is not writable.")


def claim_run_directory(logdir: str, run_name: str = "") -> str:
    """A new sub-directory of `logdir`, named `run_name` or the start time; '-2', '-3', ... is
    appended when the name is taken, so a run never writes into another one's directory."""
    prepare_logdir(logdir)
    name = run_name or time.strftime("%Y%m%d-%H%M%S")
    attempt = 1
    while True:
        directory = os.path.join(logdir, name if attempt == 1 else f"{name}-{attempt}")
        try:
            os.mkdir(directory)  # atomic: two runs starting together cannot both get it
            return directory
        except FileExistsError:
            attempt += 1
        except OSError as error:  # a full disk, a read-only mount
            raise _unusable_logdir(logdir, error) from None


def tag_of(cost: str) -> str:
    """'total' -> 'cost/total' (also 'content', 'style', 'tv'); 'style/<layer>' stays."""
    return cost if "/" in cost else f"cost/{cost}"


def hparams_of(config: Config, weights_description: str, size: tuple[int, int],
               batch: int) -> dict[str, Any]:
    settings = config.to_dict()
    values = {name: settings[name] for name in hparam_settings()}
    values.update(size=f"{size[0]}x{size[1]}", batch=batch,
                  weights_source=weights_description.removeprefix("VGG19 weights: "))
    return values


class TensorBoardLog:
    """One run's costs, images, settings and hparams in a new sub-directory of config.logdir.

    A log that cannot be written at the start (a full disk, say) is refused before any step,
    and its directory removed. One that fails mid-run stops logging but not the run: the
    image it was making is worth more than its log, so the run ends and writes it, and only
    then does finish() raise the UserError that names the log and the step it stops at."""

    def __init__(self, config: Config, stages: list[Stage], weights_description: str,
                 content: Optional[np.ndarray], styles: Sequence[np.ndarray]) -> None:
        self.log_every = config.log_every
        self.image_every = config.image_every or max(1, stages[-1].last_step // IMAGES_PER_RUN)
        self.directory = claim_run_directory(config.logdir, config.run_name)
        self.last_scalar_step = self.last_image_step = 0
        self.last: Optional[Iterate] = None
        self._write_scalars: Optional[Any] = None
        self.failure = ""  # why the log stopped, once it has
        try:
            self._write_header(config, stages, weights_description, content, styles)
        except (OSError, tf.errors.OpError) as error:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise UserError(f"Cannot write TensorBoard logs in '{self.directory}' "
                            f"({describe_error(error)}).") from None

    def _write_header(self, config: Config, stages: list[Stage], weights_description: str,
                      content: Optional[np.ndarray], styles: Sequence[np.ndarray]) -> None:
        # Events are queued in memory and reach the disk every few seconds, at image steps and
        # at the end, rather than with a flush (and fsync) per step.
        self.writer = tf.summary.create_file_writer(self.directory, max_queue=1000,
                                                    flush_millis=5000)
        with self.writer.as_default(step=0):
            text = "\n".join(f"    {line}" for line in flag_lines(config))
            tf.summary.text("config", f"tfstyle {version()}; re-run with `python -m tfstyle.run "
                                      f"--flagfile=FILE`, FILE holding:\n\n{text}")
            hparams_api.hparams(hparams_of(config, weights_description, stages[-1].size,
                                           1 if content is None else len(content)),
                                trial_id=os.path.basename(self.directory))
            if content is not None:  # a texture has none
                tf.summary.image("input/content", content, max_outputs=len(content))
            for number, image in enumerate(styles, 1):
                tf.summary.image("input/style" if number == 1 else f"input/style_{number}",
                                 image, max_outputs=len(image))
        self.writer.flush()

    def _attempt(self, step: int, write: Callable[[], None]) -> None:
        """`write()` unless the log failed before; a failure now stops all later writes."""
        if self.failure:
            return
        try:
            write()
        except (OSError, tf.errors.OpError) as error:
            self.failure = (f"Could not write the TensorBoard log in '{self.directory}' "
                            f"({describe_error(error)}), so it ends before step {step}; the run "
                            "went on without it and wrote its result")

    def __call__(self, iterate: Iterate) -> None:
        self.last = iterate
        self._attempt(iterate.step, lambda: self._log(iterate))

    def _log(self, iterate: Iterate) -> None:
        if iterate.step % self.log_every == 0:
            self.scalars(iterate)
        if iterate.step % self.image_every == 0:
            self.image(iterate.step, iterate.image())

    def scalars(self, iterate: Iterate) -> None:
        extra = {} if iterate.learning_rate is None else {
            "optimizer/learning_rate": iterate.learning_rate}
        if self._write_scalars is None:
            self._write_scalars = self._scalar_writer([*map(tag_of, iterate.costs), *extra])
        values = [*iterate.costs.values(), *extra.values()]
        self._write_scalars(tf.constant(iterate.step, tf.int64), tf.constant(values, tf.float32))
        self.last_scalar_step = iterate.step

    def _scalar_writer(self, tags: list[str]) -> Any:
        # One graph call per step instead of one eager op per tag: about 0.5 ms, not 4 ms.
        @tf.function(autograph=False)
        def write(step: tf.Tensor, values: tf.Tensor) -> None:
            with self.writer.as_default(step=step):
                for index, tag in enumerate(tags):
                    tf.summary.scalar(tag, values[index])
        return write

    def image(self, step: int, generated: np.ndarray) -> None:
        with self.writer.as_default(step=step):
            tf.summary.image("generated", generated, max_outputs=len(generated))
        self.writer.flush()
        self.last_image_step = step

    def finish(self, result: Result) -> None:
        """The final step's costs and image (if not logged yet), then everything to disk;
        raises UserError if any of the log could not be written."""
        self._attempt(result.steps, lambda: self._log_final(result))
        self.close()
        if self.failure:
            raise UserError(f"{self.failure}.")

    def _log_final(self, result: Result) -> None:
        if self.last and self.last_scalar_step != self.last.step:
            self.scalars(self.last)
        if result.steps and self.last_image_step != result.steps:
            self.image(result.steps, result.image)

    def close(self) -> None:
        self._attempt(self.last.step + 1 if self.last else 1, self.writer.flush)
        with contextlib.suppress(OSError, tf.errors.OpError):  # the failure is already noted
            self.writer.close()

    def discard_if_empty(self) -> None:
        """After a run stopped before its first step: a log of its settings alone is clutter."""
        if self.last is None:
            shutil.rmtree(self.directory, ignore_errors=True)


class ClipLog(TensorBoardLog):
    """A clip's log: the settings and the style as for a picture; then, at each frame's number,
    the costs its run ended with, its steps and seconds ('frame/steps', 'frame/seconds'),
    and a stylised frame now and then (--image_every frames, or 5 over the clip)."""

    def __init__(self, config: Config, size: tuple[int, int], frames: int,
                 styles: Sequence[np.ndarray]) -> None:
        super().__init__(config, [Stage(1, size, 0, frames)], f"VGG19 weights: {config.weights}",
                         None, styles)

    def frame(self, number: int, costs: dict[str, float], steps: int, seconds: float,
              picture: np.ndarray) -> None:
        """Log frame `number` (`picture` uint8 [H, W, 3])."""
        def write() -> None:
            with self.writer.as_default(step=number):
                for name, value in costs.items():
                    tf.summary.scalar(tag_of(name), value)
                tf.summary.scalar("frame/steps", steps)
                tf.summary.scalar("frame/seconds", seconds)
            if number % self.image_every == 0:
                self.image(number, picture[None].astype(np.float32) / 255.0)
        self._attempt(number, write)


# --- The terminal -------------------------------------------------------------------------

def duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """Keras' progress bar on a terminal or in a notebook; on anything else (CI logs, pipes) a
    plain line every tenth of the run, since the bar's carriage returns would garble them. A
    line names each scale as it starts. The ETA weighs the steps left by their pixels: a step
    at twice the size takes four times as long."""

    def __init__(self, stages: list[Stage], interactive: Optional[bool] = None) -> None:
        if interactive is None:
            interactive = sys.stdout.isatty() or "ipykernel" in sys.modules
        self.stages = stages
        self.steps = stages[-1].last_step
        self.every = max(1, self.steps // PROGRESS_LINES)
        self.bar = (keras.utils.Progbar(self.steps, stateful_metrics=(*SHOWN_COSTS, "steps/s"))
                    if interactive else None)
        self.first: Optional[tuple[int, float]] = None  # (step, when it ended) first of this call
        self.scale_start: Optional[tuple[int, float]] = None  # the same for the current scale
        self.scale = 0
        self.last_step = 0

    def work(self, first: int, last: int) -> float:
        """Pixels × steps of steps first+1 .. last."""
        return sum(max(0, min(last, stage.last_step) - max(first, stage.first_step))
                   * stage.size[0] * stage.size[1] for stage in self.stages)

    def rates(self, step: int) -> tuple[Optional[float], Optional[float]]:
        """(steps per second at this scale, seconds left). Timed from the end of the first step of
        this call or scale, which includes the XLA compilation (counting it would skew both)."""
        now = time.perf_counter()
        if self.first is None:
            self.first = (step, now)
        first, start = self.first
        scale_first, scale_start = self.scale_start
        speed = (step - scale_first) / (now - scale_start) if step > scale_first else None
        if step <= first or now <= start:
            return speed, None
        return speed, self.work(step, self.steps) * (now - start) / self.work(first, step)

    def __call__(self, iterate: Iterate) -> None:
        if iterate.scale != self.scale:
            self.scale = iterate.scale
            self.scale_start = (iterate.step, time.perf_counter())
            if iterate.scales > 1:
                self.announce(iterate)
        self.last_step = iterate.step
        speed, left = self.rates(iterate.step)
        shown = [(name, iterate.costs[name]) for name in SHOWN_COSTS if name in iterate.costs]
        if self.bar is not None:
            self.bar.update(iterate.step, shown + ([("steps/s", speed)] if speed else []))
        elif iterate.step % self.every == 0 or iterate.step == self.steps:
            eta = f", ETA {duration(left)}" if left is not None else ""
            rate = f", {speed:.2f} steps/s" if speed else ""
            values = ", ".join(f"{name} {value:.4g}" for name, value in shown)
            print(f"step {iterate.step}/{self.steps}{rate}{eta}: {values}", flush=True)

    def announce(self, iterate: Iterate) -> None:
        stage = self.stages[iterate.scale - 1]
        if self.bar is not None and 0 < self.last_step:
            print(flush=True)  # leave the bar's line
        print(f"scale {iterate.scale}/{iterate.scales}: {stage.size[0]}x{stage.size[1]} pixels, "
              f"steps {iterate.step}-{stage.last_step}", flush=True)

    def close(self) -> None:
        if self.bar is not None and 0 < self.last_step < self.steps:
            print(flush=True)  # an interrupted bar leaves its line open


class RunMonitor:
    """The step callback that feeds the progress bar and TensorBoard (either may be off)."""

    def __init__(self, config: Config, stages: list[Stage], weights_description: str,
                 content: Optional[np.ndarray], styles: Sequence[np.ndarray]) -> None:
        self.progress = None if config.quiet else Progress(stages)
        self.tensorboard = (TensorBoardLog(config, stages, weights_description, content, styles)
                            if config.logdir else None)
        if self.tensorboard:
            logging.info("TensorBoard logs: %s", self.tensorboard.directory)

    @property
    def log_dir(self) -> str:
        return self.tensorboard.directory if self.tensorboard else ""

    def __call__(self, iterate: Iterate) -> None:
        if self.tensorboard:
            self.tensorboard(iterate)
        if self.progress:
            self.progress(iterate)

    def finish(self, result: Result) -> None:
        if self.progress:
            self.progress.close()
        if self.tensorboard:
            self.tensorboard.finish(result)

    def close(self) -> None:
        """After an error or Ctrl-C: keep what was logged, if any step was."""
        if self.progress:
            self.progress.close()
        if self.tensorboard:
            self.tensorboard.close()
            self.tensorboard.discard_if_empty()
