"""The exceptions the command-line scripts turn into one line and an exit code instead of a traceback."""


class PipelineError(Exception):
    """A problem the user can fix: the message names the problem and the fix, on one line (exit 2)."""


class Interrupted(Exception):
    """Ctrl-C, caught where a stage knows what it kept: the message says what was kept and how to go on (exit 130)."""
