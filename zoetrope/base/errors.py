"""The one exception type for user mistakes: the CLI prints its message as one line and exits 2."""


class UserError(Exception):
    """A mistake in the user's input (file, field, option); never a bug in Zoetrope."""

    exit_code = 2


class ModelLoadError(UserError):
    """Weights could not be loaded; the message says what to do instead."""
