"""Errors a user can cause. The CLI prints them without a traceback and exits 2."""


class DrivesimError(Exception):
    """A bad input from the user: the message names the input and what is wrong."""


class ConfigError(DrivesimError):
    """A bad option, config value or file."""


class DataError(DrivesimError):
    """Bad or missing data: a log folder, a table, an image, a clip store."""


class ScenarioError(ConfigError):
    """A bad scenario: a file, a field or an edit; the message names the scenario and the field."""
