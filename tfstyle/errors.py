"""The one exception type that reaches the user as a sentence instead of a traceback, and the
line a Ctrl-C before the first step gets instead of one."""
from __future__ import annotations

import signal
import sys


class UserError(Exception):
    """A problem with what the user asked for (a bad file, flag or setting).

    The message is one complete sentence that names the culprit and, where possible, says
    what would work instead; the CLI prints it on one line and exits with status 2.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM before the loop takes the signals over; it stops tfstyle as Ctrl-C does."""


def stop_on_sigterm() -> None:
    """Until the loop takes SIGTERM over (to finish the step and write the image), have a
    SIGTERM stop tfstyle as Ctrl-C does, with a line, rather than kill it silently."""
    def stop(number: int, frame: object) -> None:
        raise Terminated()

    signal.signal(signal.SIGTERM, stop)


def stopped_before_start(interrupt: BaseException | None = None) -> int:
    """Say that a Ctrl-C (or SIGTERM) came before the loop could write anything (TensorFlow
    importing, the weights loading, ...; from the first step on, the loop writes the image)
    and return the exit status, 128 + the signal's number."""
    terminated = isinstance(interrupt, Terminated)
    print(f"tfstyle: stopped by {'SIGTERM' if terminated else 'Ctrl-C'} before the first step; "
          "nothing was written.", file=sys.stderr)
    return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
