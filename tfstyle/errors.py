"""The one exception type that reaches the user as a sentence instead of a traceback, and the
line a Ctrl-C before the first step gets instead of one."""
import signal
import sys


class UserError(Exception):
    """A problem with what the user asked for (a bad file, flag or setting).

    The message is one complete sentence that names the culprit and, where possible, says
    what would work instead; the CLI prints it on one line and exits with status 2.
    """


def stopped_before_start() -> int:
    """Say that Ctrl-C came before the loop could write anything (TensorFlow importing, the
    weights loading, ...; from the first step on, the loop writes the image) and return the
    exit status, 128 + SIGINT."""
    print("tfstyle: stopped by Ctrl-C before the first step; nothing was written.",
          file=sys.stderr)
    return 128 + signal.SIGINT
