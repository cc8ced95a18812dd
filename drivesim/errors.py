"""Errors a user can cause. The CLI prints them without a traceback and exits 2."""


def describe(error: BaseException) -> str:
    """One line naming an error a library raised: its type and the first non-empty line of its message."""
    kind = type(error)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{name}: {lines[0]}" if lines else name


class DrivesimError(Exception):
    """A bad input from the user: the message names the input and what is wrong."""


class ConfigError(DrivesimError):
    """A bad option, config value or file."""


class DataError(DrivesimError):
    """Bad or missing data: a log folder, a table, an image, a clip store."""


class DamagedData(DataError):
    """Stored data that cannot be read as written: `where` names it (store, clip, array), `what` the damage."""

    def __init__(self, where: str, what: str):
        super().__init__(f"{where}: {what}")
        self.where, self.what = where, what


class ScenarioError(ConfigError):
    """A bad scenario: a file, a field or an edit; the message names the scenario and the field."""
