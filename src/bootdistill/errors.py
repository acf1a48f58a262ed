"""One exception type for everything a user can fix: the CLI prints its message as one line and exits 2."""


class BootdistillError(Exception):
    """A problem with the user's input or environment, with a message that says how to fix it."""


class ConfigError(BootdistillError):
    """A config key, type or value is wrong."""


class DataError(BootdistillError):
    """A corpus, tokenizer or prepared dataset is missing, empty or inconsistent."""


class CheckpointError(BootdistillError):
    """A checkpoint is missing, corrupt, or belongs to another run."""
