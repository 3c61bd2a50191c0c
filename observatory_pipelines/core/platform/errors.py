"""Errors that carry a one-line, actionable message for the person at the keyboard."""


class ObservatoryError(Exception):
    """Base class: ``str(err)`` is a single line that says what to do."""


class ConfigError(ObservatoryError):
    """A configuration value is missing or malformed."""


class DatabaseUnavailable(ObservatoryError):
    """The database could not be reached or refused us."""

    retryable = True  # an outage or a restart passes; a retry of the run may well succeed
