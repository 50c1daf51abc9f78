"""The two kinds of mistake a user can fix, shared by every floor: the CLIs print them as one line, no traceback."""


class UserError(ValueError):
    """A mistake in how the tool was called (bad checkpoint, wrong argument): message only, no traceback."""


class DataError(ValueError):
    """Bad input data. The message names the file (or row) and says what to do."""


class RunStoppedEarly(Exception):
    """A callback ended the training run on purpose (a pruned trial of a search): the run is recorded as stopped
    (MLflow status KILLED, with the reason as a tag), not as failed."""
