"""The one exception type the command-line scripts turn into a one-line error and a non-zero exit."""


class PipelineError(Exception):
    """A problem the user can fix: the message names the problem and the fix, on one line."""
