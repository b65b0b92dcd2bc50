"""The one exception type that reaches the user as a sentence instead of a traceback."""


class UserError(Exception):
    """A problem with what the user asked for (a bad file, flag or setting).

    The message is one complete sentence that names the culprit and, where possible, says
    what would work instead; the CLI prints it on one line and exits with status 2.
    """
