"""Errors that jaxvad raises for bad input: the CLI prints their message, never a traceback."""


class JaxvadError(Exception):
  """Base class: a problem the user can fix; the message names the file or key and the fix."""


class DataError(JaxvadError, ValueError):
  """Unreadable, missing or inconsistent input data (videos, frame folders, labels)."""


class ConfigError(JaxvadError, ValueError):
  """An unknown config key or a bad value."""


class TrainingError(JaxvadError, RuntimeError):
  """Training cannot go on (e.g. a non-finite loss)."""
