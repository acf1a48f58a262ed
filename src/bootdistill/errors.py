"""One exception type for everything a user can fix: the CLI prints its message as one line and exits 2."""

import difflib


class BootdistillError(Exception):
    """A problem with the user's input or environment, with a message that says how to fix it."""


class ConfigError(BootdistillError):
    """A config key, type or value is wrong."""


class DataError(BootdistillError):
    """A corpus, tokenizer or prepared dataset is missing, empty or inconsistent."""


class CheckpointError(BootdistillError):
    """A checkpoint is missing, corrupt, or belongs to another run."""


def closest(name: str, options: list[str]) -> str:
    """The end of an "unknown name" message: the likeliest meant option, else the valid ones."""
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else f" (valid keys: {', '.join(options)})"
