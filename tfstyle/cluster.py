"""The 'ray' engine of a folder run: each image is a Ray task, on this machine or a cluster.

What goes over the network: to each task, the content image's file as bytes and the Config;
once for all tasks (through Ray's object store), the style images, masks and --init file as
bytes; back, the picture as a float32 array (12 bytes a pixel) and a few numbers. Workers
need tfstyle installed, not the driver's files: a task writes its inputs to a temporary
directory of its own and runs the image there. Only the driver writes outputs. A worker
process loads VGG19 on its first image and keeps it (features caches the model) for the
next ones. A task whose worker dies (a killed process, a lost machine) is run again, up to
MAX_RETRIES times.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import signal
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence, Union

from tfstyle.config import INITS, Config, split_paths
from tfstyle.errors import UserError
from tfstyle.jobs import Job, Outcome, run_job

MAX_RETRIES = 3
# Tasks in flight per task slot the cluster has: enough that no slot waits for the driver,
# few enough that a folder of thousands is not read into the object store at once.
TASKS_PER_SLOT = 2
# A file travels as (its path on the driver, its bytes); a bundled sample as its name.
Input = Union[str, tuple[str, bytes]]


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("--engine=ray needs Ray, which is not installed here: "
                        "pip install 'tfstyle[ray]'.") from None
    return ray


class WorkerStopped(Exception):
    """The worker was sent SIGINT or SIGTERM (a node being shut down, say) mid-image: Ray runs
    the image again, rather than the driver taking it for the user's Ctrl-C."""


def packed_inputs(config: Config, settings: Sequence[str]) -> dict[str, list[Input]]:
    """The input files that `settings` of `config` name, read for the journey."""
    packed: dict[str, list[Input]] = {}
    for name in settings:
        value = getattr(config, name)
        if (name == "init" and value in INITS) or (name == "weights" and not os.path.isfile(value)):
            continue
        packed[name] = [path if path.startswith("sample:") else (path, read_bytes(path))
                        for path in split_paths(value)]
    return packed


def read_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise UserError(f"Cannot read '{path}' ({error.strerror or error}).") from None


def run_image(config: Config, own: dict[str, list[Input]], shared: dict[str, list[Input]],
              threads: int) -> Outcome:
    """A task: the job's inputs written to a directory of this worker's, its image run there.
    Messages name the inputs by their paths on the driver."""
    _use_threads(threads)
    with unpacked({**shared, **own}) as (paths, renamed):
        outcome = run_job(config.replace(**paths))
    if outcome.interrupted:
        raise WorkerStopped(f"stopped by {outcome.stopped_by}")
    for local, original in renamed.items():
        outcome.error = outcome.error.replace(local, original)
    return outcome


def run_shot(config: Config, shared: dict[str, list[Input]], work: Any,
             threads: int) -> Iterator[Any]:
    """A task streaming a video shot's frames (video.ShotWork) back as each is done."""
    from tfstyle import video  # video imports the API; folder runs need not
    _use_threads(threads)
    with unpacked(shared) as (paths, _):
        for outcome in video.stylise_shot(config.replace(**paths), work):
            if outcome.picture is None:
                raise WorkerStopped(f"stopped by {outcome.stopped_by}")
            yield outcome


@contextlib.contextmanager
def unpacked(inputs: dict[str, list[Input]]) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """packed_inputs written to a temporary directory of this worker's, for as long as the
    context lasts: each setting's local paths (comma-separated), and each local path's
    original on the driver."""
    inputs = dict(inputs)
    paths = {}
    if "weights" in inputs:
        (original, data), = inputs.pop("weights")
        paths["weights"] = _kept_weights(original, data)
    with tempfile.TemporaryDirectory(prefix="tfstyle-task-") as directory:
        renamed: dict[str, str] = {}
        for setting, items in inputs.items():
            local = []
            for item in items:
                if isinstance(item, str):
                    local.append(item)
                    continue
                original, data = item
                folder = os.path.join(directory, str(len(renamed)))
                os.mkdir(folder)
                path = os.path.join(folder, os.path.basename(original) or "image")
                Path(path).write_bytes(data)
                renamed[path] = original
                local.append(path)
            paths[setting] = ",".join(local)
        yield paths, renamed


def _kept_weights(original: str, data: bytes) -> str:
    """A --weights file sent from the driver, kept under a name of its contents in this
    machine's temporary directory, so that the worker's later images find VGG19 loaded (the
    model is cached by the weights' path)."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(),
                        f"tfstyle-weights-{digest}-{os.path.basename(original)}")
    if not os.path.exists(path):
        fd, temp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tfstyle-")
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temp, path)
    return path


def _use_threads(threads: int) -> None:
    """TensorFlow's thread pools sized to the CPUs the task claimed; possible only before the
    worker's first image starts TensorFlow's runtime, and kept for its later images."""
    import tensorflow as tf
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass


class RayEngine:
    """Submits every job as a task and hands back the outcomes as they finish. Uses the Ray
    already initialised in this process if there is one, else starts (or joins) one."""

    def __init__(self, config: Config) -> None:
        self.ray = import_ray()
        self.config = config
        self.started = False
        # Ray ends a GPU task's worker after each task by default (max_calls); the weights
        # would then be loaded again for every image.
        self.task = self.ray.remote(max_calls=0)(run_image).options(
            num_cpus=config.cpus_per_image, num_gpus=config.gpus_per_image,
            max_retries=MAX_RETRIES, retry_exceptions=[WorkerStopped])
        if not self.ray.is_initialized():
            address = config.ray_address or "local"
            # ray.init makes SIGTERM exit at once; tfstyle's own handling (a line, the
            # summary, exit status 143) is put back.
            handlers = {number: signal.getsignal(number)
                        for number in (signal.SIGINT, signal.SIGTERM)}
            try:
                self.ray.init(address=address, log_to_driver=False, include_dashboard=False,
                              logging_level="ERROR",
                              runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}})
            except Exception as error:  # Ray raises many kinds for an address it cannot use
                where = "a local Ray" if address == "local" else f"the Ray cluster at '{address}'"
                raise UserError(f"Could not start or join {where} "
                                f"({' '.join(str(error).split())[:200]}).") from None
            finally:
                for number, handler in handlers.items():
                    if handler is not None:
                        signal.signal(number, handler)
            self.started = True

    def slots(self) -> int:
        """How many images the cluster can run at once, by the resources a task claims."""
        resources = self.ray.cluster_resources()
        slots = resources.get("CPU", 1) / self.config.cpus_per_image
        if self.config.gpus_per_image:
            slots = min(slots, resources.get("GPU", 0) / self.config.gpus_per_image)
        return max(1, int(slots))

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[Job, Outcome]]:
        ray = self.ray
        shared = ray.put(packed_inputs(self.config, ("style", "style_masks", "init", "weights")))
        threads = max(1, math.ceil(self.config.cpus_per_image))
        waiting = list(reversed(jobs))
        window = TASKS_PER_SLOT * self.slots()
        pending: dict[Any, Job] = {}
        try:
            while waiting or pending:
                while waiting and len(pending) < window:
                    job = waiting.pop()
                    try:
                        own = packed_inputs(job.config, ("content",))
                    except UserError as error:
                        yield job, Outcome(error=str(error))
                        continue
                    pending[self.task.remote(job.config.replace(quiet=True), own, shared,
                                             threads)] = job
                if pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    for ref in ready:
                        yield pending.pop(ref), self._outcome(ref)
        finally:
            for ref in pending:  # Ctrl-C, or the driver stopped early
                ray.cancel(ref, force=True)

    def _outcome(self, ref: Any) -> Outcome:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as error:
            first = next((line for line in str(error).splitlines() if line.strip()), "")
            return Outcome(error=f"its Ray task failed ({type(error).__name__}: {first[:200]}); "
                           f"a task whose worker died or was stopped is run up to "
                           f"{MAX_RETRIES + 1} times.")

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
