"""The loop over the stages and their steps: callbacks, saving, checkpoints, Ctrl-C and SIGTERM,
and the NaN guard, the same for every optimiser."""
from __future__ import annotations

import dataclasses
import signal
import threading
import time
from typing import Any, Callable, NoReturn, Optional, Sequence

import numpy as np
from absl import logging

from tfstyle.errors import UserError
from tfstyle.objective import first_bad_cost
from tfstyle.optimizers import NonFiniteCosts, Optimizer
from tfstyle.schedule import Average, Size, Stage, stage_of


@dataclasses.dataclass(frozen=True)
class Iterate:
    """What a step callback receives after each step: a record of the step, not the engine."""
    step: int  # from 1, counted over all scales
    steps: int  # the run's last step
    scale: int  # from 1
    scales: int
    size: Size  # (width, height) of the image at this scale
    costs: dict[str, float]  # the step's costs: "total", each term, each term's parts
    learning_rate: Optional[float]  # None for L-BFGS
    image: Callable[[], np.ndarray]  # the picture that would be written now, [batch, H, W, 3]


StepCallback = Callable[[Iterate], None]


@dataclasses.dataclass
class StageRun:
    """What one stage runs with: its optimiser (holding the image), the average of the image
    if any, and how to write a checkpoint of this state."""
    optimizer: Optimizer
    average: Optional[Average] = None
    checkpoint: Optional[Callable[[int], None]] = None

    def picture(self) -> np.ndarray:
        """The image to write: the average when there is one."""
        return self.average.value() if self.average else self.optimizer.image.numpy()

    def restart(self, start: np.ndarray) -> None:
        """Back to the state of a stage just begun, from `start`."""
        self.optimizer.image.assign(start)
        self.optimizer.reset()
        if self.average:
            self.average.reset()

    def state(self) -> dict[str, Any]:
        """What a checkpoint of this stage holds (with the step)."""
        return {"image": self.optimizer.image, **self.optimizer.trackables(),
                **(self.average.trackables() if self.average else {})}


# begin(stage, image) sets a stage up, from the previous stage's picture (None for the first
# stage run, which starts from the initial image or a checkpoint).
BeginStage = Callable[[Stage, Optional[np.ndarray]], StageRun]


@dataclasses.dataclass
class Result:
    image: np.ndarray  # [batch, H, W, 3] in [0, 1]
    history: list[dict[str, float]]  # costs returned by each step of this call
    steps: int  # the step the image belongs to (fewer than asked if stopped early)
    seconds: float
    interrupted: bool = False
    stopped_by: str = ""  # "SIGINT", "SIGTERM" or "" when the run was not interrupted
    log_dir: str = ""  # this run's TensorBoard directory, when config.logdir is set
    outputs: list[str] = dataclasses.field(default_factory=list)  # files written, one per image


class NonFiniteCost(UserError):
    """A cost or the image itself became NaN or infinite at `step` (`what` says which, as the
    start of a sentence); the last finite image, of step `kept`, is kept (None: there was none)."""

    def __init__(self, step: int, what: str, kept: Optional[int],
                 precision: str = "float32", image: Optional[np.ndarray] = None) -> None:
        advice = ("Activations in float16 overflow above 65504, so --precision=mixed_bfloat16 "
                  "or float32 may help" if precision == "mixed_float16" else
                  "A lower --learning_rate or other weights may help")
        outcome = ("no step had a finite image, so nothing was written" if kept is None
                   else f"kept the image of step {kept}")
        super().__init__(f"{what} at step {step}; stopped and {outcome}. {advice}.")
        self.step = step
        self.kept = kept
        self.image = image  # the picture kept (as written), for a caller that writes it itself


class StopRequests:
    """Turns SIGINT and SIGTERM into a request to stop after the current step, so the step
    finishes and the latest image (and checkpoint) can be written. Only in the main thread,
    where Python allows signal handlers; elsewhere Ctrl-C stays a KeyboardInterrupt."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                self._previous[number] = signal.signal(number, self._request)
        return self

    def _request(self, number: int, frame: Any) -> None:
        if self.signal_name:  # a second Ctrl-C means now
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(number).name
        logging.warning("%s received: stopping after this step.", self.signal_name)

    def __exit__(self, *exc: Any) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def optimize(stages: Sequence[Stage], begin: BeginStage, save: Callable[[np.ndarray, int], None],
             save_every: int = 0, callbacks: Sequence[StepCallback] = (), start_step: int = 0,
             checkpoint_every: int = 0, precision: str = "float32",
             finish: Callable[[np.ndarray], np.ndarray] = lambda pictures: pictures) -> Result:
    """Run the stages' steps after `start_step`. `save(image, step)` every `save_every` steps and
    always at the end, also when SIGINT/SIGTERM/Ctrl-C stops the run early; the stage's
    checkpoint every `checkpoint_every` steps and when stopped early. Raises NonFiniteCost
    (after saving the last finite image) when a cost goes bad, or the image itself: an update
    can overflow under finite costs, and the pixels it leaves must not be written as black.
    What is saved, shown to the callbacks and returned is `finish` of the stage's picture (a
    post-process such as colors.finisher); the next scale starts from the picture itself."""
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    last = stages[-1].last_step
    done = start_step
    stop = StopRequests()
    interrupted = False
    run: Optional[StageRun] = None
    good: Optional[tuple[np.ndarray, int]] = None  # the last finite picture, and its step

    def keep_if_finite(step: int) -> None:
        nonlocal good
        picture = np.array(run.picture())  # a copy: the next step changes the variable
        if not np.isfinite(picture).all():
            give_up(step, "The image itself became NaN or infinite")
        good = picture, step

    def give_up(step: int, what: str) -> NoReturn:
        if good:
            save(written(), good[1])
        raise NonFiniteCost(step, what, good[1] if good else None, precision,
                            written() if good else None) from None

    def written() -> np.ndarray:
        return finish(good[0])

    def after_step(stage: Stage, step: int, costs: dict[str, float]) -> bool:
        nonlocal done
        done = step
        history.append(costs)
        if run.average:
            run.average.update()
        keep_if_finite(step)
        # Written before the callbacks run, so a preview callback shows this step's file.
        if save_every and step % save_every == 0 and step < last and not stop.signal_name:
            save(written(), step)
        iterate = Iterate(step, last, stage.scale, len(stages), stage.size, costs,
                          run.optimizer.learning_rate, written)
        for callback in callbacks:
            callback(iterate)
        if stop.signal_name:
            return True
        if run.checkpoint and checkpoint_every and step % checkpoint_every == 0:
            try:
                run.checkpoint(step)
            except UserError as error:  # (a full disk, say) the image may still fit: keep the work
                save(written(), step)
                raise UserError(f"{str(error).rstrip('.')}; the image of step {step} was "
                                "written.") from None
        return False

    try:
        with stop:
            picture: Optional[np.ndarray] = None
            # A resumed run starts with the stage its checkpoint's step belongs to.
            holding = stages.index(stage_of(stages, start_step))
            for stage in stages[holding:]:
                run = begin(stage, picture)
                first = max(start_step, stage.first_step)
                keep_if_finite(first)
                try:
                    run.optimizer.run(first, stage.last_step,
                                      lambda step, costs, stage=stage: after_step(stage, step,
                                                                                  costs))
                except NonFiniteCosts as error:
                    bad = first_bad_cost(error.costs)
                    give_up(done + 1, f"The cost '{bad}' became {error.costs[bad]}")
                if stop.signal_name:
                    break
                picture = run.picture()
    except KeyboardInterrupt:
        interrupted = True
        logging.warning("Interrupted after step %d; writing the latest image.", done)
    interrupted = interrupted or bool(stop.signal_name)
    if good is None:  # interrupted before the first stage was set up: nothing to write
        raise KeyboardInterrupt
    image = written()
    save(image, done)
    if run.checkpoint and (interrupted or (checkpoint_every and done % checkpoint_every)):
        run.checkpoint(done)
    return Result(image, history, done, time.perf_counter() - start, interrupted,
                  stop.signal_name or ("SIGINT" if interrupted else ""))
