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
import tempfile
from pathlib import Path
from typing import Any

import tensorflow as tf

from tfstyle.config import (Config, absent_settings, format_layer_weights, objective_settings,
                            upgrade_settings)
from tfstyle.errors import UserError

SETTINGS_FILE = "settings.json"


def checkpoint_directory(output: str | os.PathLike) -> Path:
    """Checkpoints of the run writing `output` live beside it: out.png -> out.png.checkpoints/."""
    return Path(f"{output}.checkpoints")


def latest_step(output: str | os.PathLike) -> int:
    """The step of the latest checkpoint beside `output` (it tells the scale to set up before
    restoring); refuses a directory with none or one tfstyle did not write."""
    directory = checkpoint_directory(output)
    latest = tf.train.latest_checkpoint(str(directory))
    if latest is None:
        raise UserError(f"Nothing to resume: no checkpoint in '{directory}'; run with "
                        "--checkpoint_every=N first.")
    try:
        return int(tf.train.load_variable(latest, "step/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.OpError, ValueError) as error:
        raise UserError(f"The checkpoint '{latest}' cannot be read ({error}).") from None


class Checkpoints:
    """Saves and restores `state` (named trackables: the image, the optimiser's state, ...) in
    checkpoint_directory(output), keeping the last `keep` checkpoints."""

    def __init__(self, config: Config, state: dict[str, Any], keep: int = 3) -> None:
        self.config = config
        self.directory = checkpoint_directory(config.output)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(**state, step=self.step)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory),
                                                  max_to_keep=keep)

    def save(self, step: int) -> str:
        """Write a checkpoint for `step`; a failed write leaves the previous one valid."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._write_settings()
            self.step.assign(step)
            return self.manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as error:
            raise UserError(f"Could not write a checkpoint in '{self.directory}' ({error}); "
                            "the previous checkpoint is still valid.") from None

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
        except (tf.errors.OpError, AssertionError, ValueError) as error:
            raise UserError(f"The checkpoint '{latest}' cannot be restored ({error}).") from None
        return int(self.step.numpy())

    def _objective(self) -> dict[str, Any]:
        settings = self.config.to_dict()
        return {name: settings[name] for name in objective_settings()}

    def _write_settings(self) -> None:
        fd, temp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "w") as file:
            json.dump(self._objective(), file, indent=1)
        os.replace(temp, self.directory / SETTINGS_FILE)

    def _differing_settings(self) -> list[str]:
        try:
            saved = json.loads((self.directory / SETTINGS_FILE).read_text())
        except (OSError, ValueError):
            raise UserError(f"'{self.directory}' has no readable {SETTINGS_FILE}; it was not "
                            "written by tfstyle.") from None
        current = self._objective()
        # A setting added after the checkpoint was written had its old behaviour then; one
        # whose form changed is read in today's.
        absent = Config(**absent_settings()).to_dict()
        if isinstance(saved, dict) and isinstance(saved.get("content_layer"), str):
            saved = upgrade_settings(saved)
            saved["content_layers"] = format_layer_weights(saved["content_layers"])
        saved = {**{name: absent[name] for name in absent_settings()}, **saved}
        return [f"--{name} (was {saved.get(name)!r}, now {current[name]!r})"
                for name in objective_settings() if saved.get(name) != current[name]]
