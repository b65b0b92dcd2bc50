"""Checkpoints of a run in progress, so an hour-long run survives Ctrl-C, SIGTERM and crashes.

A checkpoint holds the image variable, the optimiser's state (Adam's moments and iteration
count; L-BFGS has none it can share), the image's average if any, and the step number, which
also says which scale the image is at; the initial noise needs no RNG state because it is
drawn once from --seed. Resuming continues bit for bit where the run stopped (with TF op
determinism on, see api.py; for L-BFGS, from a --checkpoint_every checkpoint, see
optimizers.py).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import tensorflow as tf

from tfstyle.config import (Config, absent_settings, format_layer_weights, input_paths,
                            objective_settings, upgrade_settings)
from tfstyle.errors import UserError
from tfstyle.images import temporary_file

SETTINGS_FILE = "settings.json"


def describe_error(error: Exception) -> str:
    """The gist of an OSError or TF error, short enough for a one-line message: TF's run to
    several lines of graph context, and the first says what went wrong."""
    lines = str(getattr(error, "message", error)).strip().splitlines() or [type(error).__name__]
    return lines[0][:120]


# What to do about a damaged checkpoint directory, once the message has named it.
START_AFRESH = "delete its directory and start afresh without --resume (and with --overwrite)"


def _damaged_state(directory: Path, error: Exception) -> UserError:
    return UserError(f"'{directory / 'checkpoint'}', the list of checkpoints, is damaged "
                     f"({describe_error(error)}); {START_AFRESH}.")


def checkpoint_directory(output: str | os.PathLike) -> Path:
    """Checkpoints of the run writing `output` live beside it: out.png -> out.png.checkpoints/."""
    return Path(f"{output}.checkpoints")


def check_directory(output: str | os.PathLike) -> None:
    """Refuse, before any work, a run whose checkpoint directory could never be made."""
    directory = checkpoint_directory(output)
    if os.path.lexists(directory) and not directory.is_dir():
        raise UserError(f"'{directory}', where this run's checkpoints go, is a file, not a "
                        "directory; move it away or choose another --output.")


def latest_step(output: str | os.PathLike) -> int:
    """The step of the latest checkpoint beside `output` (it tells the scale to set up before
    restoring); refuses a directory with none or one tfstyle did not write."""
    directory = checkpoint_directory(output)
    try:
        latest = tf.train.latest_checkpoint(str(directory))
    except Exception as error:  # TF's reader raises all sorts on damaged bytes: the file's fault
        raise _damaged_state(directory, error) from None
    if latest is None:
        raise UserError(f"Nothing to resume: no checkpoint in '{directory}'; run with "
                        "--checkpoint_every=N first.")
    try:
        return int(tf.train.load_variable(latest, "step/.ATTRIBUTES/VARIABLE_VALUE"))
    except Exception as error:  # (likewise)
        raise UserError(f"The checkpoint '{latest}' cannot be read ({describe_error(error)}); "
                        f"{START_AFRESH}.") from None


class Checkpoints:
    """Saves and restores `state` (named trackables: the image, the optimiser's state, ...) in
    checkpoint_directory(output), keeping the last `keep` checkpoints."""

    def __init__(self, config: Config, state: dict[str, Any], keep: int = 3) -> None:
        self.config = config
        self.directory = checkpoint_directory(config.output)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(**state, step=self.step)
        try:
            self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory),
                                                      max_to_keep=keep)
        except Exception as error:  # it reads the list of checkpoints, as latest_step does
            raise _damaged_state(self.directory, error) from None

    def save(self, step: int) -> str:
        """Write a checkpoint for `step`; a failed write leaves the previous one valid and no
        part of its own behind."""
        previous = self.manager.latest_checkpoint
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._write_settings()
            self.step.assign(step)
            return self.manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as error:
            self._discard(step, previous)
            kept = (f"the checkpoint '{previous}' is still valid" if previous else
                    "no checkpoint was kept, so this run cannot be resumed")
            raise UserError(f"Could not write a checkpoint in '{self.directory}' "
                            f"({describe_error(error)}); {kept}.") from None

    def _discard(self, step: int, previous: str | None) -> None:
        """Remove what a failed save of `step` wrote: TF's temporary directory, files of the
        new checkpoint, and the directory itself when it holds nothing else to resume from."""
        prefix = self.directory / f"ckpt-{step}"
        shutil.rmtree(f"{prefix}_temp", ignore_errors=True)
        if previous != str(prefix):  # re-saving a step must not delete the valid copy
            for path in self.directory.glob(f"{prefix.name}.*"):
                path.unlink(missing_ok=True)
        if previous is None and self.directory.is_dir():
            (self.directory / SETTINGS_FILE).unlink(missing_ok=True)
            if not any(self.directory.iterdir()):
                self.directory.rmdir()

    def restore(self) -> int:
        """Load the latest checkpoint and return its step; refuse one made with other settings."""
        latest = self.manager.latest_checkpoint
        if latest is None:
            raise UserError(f"Nothing to resume: no checkpoint in '{self.directory}'; run with "
                            "--checkpoint_every=N first.")
        differing = self._differing_settings()
        if differing:
            raise UserError(f"Cannot resume from '{self.directory}': these settings differ from "
                            f"the checkpointed run's: {', '.join(differing)}.")
        try:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        except Exception as error:  # as in latest_step: damaged bytes, or another run's state
            raise UserError(f"The checkpoint '{latest}' cannot be restored "
                            f"({describe_error(error)}); {START_AFRESH}.") from None
        return int(self.step.numpy())

    def _objective(self, as_given: bool = False) -> dict[str, Any]:
        """The settings a resumed run must share, input files by their absolute paths (so
        `--content=photo.jpg` and `--content=/home/me/photo.jpg` are the same run) unless
        `as_given`."""
        settings = {**self.config.to_dict(), **({} if as_given else input_paths(self.config))}
        return {name: settings[name] for name in objective_settings()}

    def _write_settings(self) -> None:
        fd, temp = temporary_file(self.directory, f".{SETTINGS_FILE}.", ".tmp")
        try:
            with os.fdopen(fd, "w") as file:
                json.dump(self._objective(), file, indent=1)
            os.replace(temp, self.directory / SETTINGS_FILE)
        except BaseException:
            os.unlink(temp)
            raise

    def _differing_settings(self) -> list[str]:
        path = self.directory / SETTINGS_FILE
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            saved = None
        if not isinstance(saved, dict):
            raise UserError(f"'{path}' is missing or damaged, so the run cannot be checked "
                            f"against it; {START_AFRESH}.")
        current, given = self._objective(), self._objective(as_given=True)
        # A setting added after the checkpoint was written had its old behaviour then; one
        # whose form changed is read in today's.
        absent = Config(**absent_settings()).to_dict()
        if isinstance(saved.get("content_layer"), str):
            saved = upgrade_settings(saved)
            saved["content_layers"] = format_layer_weights(saved["content_layers"])
        saved = {**{name: absent[name] for name in absent_settings()}, **saved}
        # (Checkpoints written before paths were made absolute hold them as given.)
        return [f"--{name} (was {saved.get(name)!r}, now {current[name]!r})"
                for name in objective_settings() if saved.get(name) not in (current[name],
                                                                              given[name])]
