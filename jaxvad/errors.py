"""Errors that jaxvad raises for bad input or a failing disk: the CLI prints their message, never
a traceback."""


class JaxvadError(Exception):
  """Base class: a problem the user can fix; the message names the file or key and the fix.

  Messages are one line: the CLI prints them as `jaxvad COMMAND: error: MESSAGE`.
  """


class DataError(JaxvadError, ValueError):
  """Unreadable, missing or inconsistent input data (videos, frame folders, labels)."""


class ConfigError(JaxvadError, ValueError):
  """An unknown config key or a bad value."""


class TrainingError(JaxvadError, RuntimeError):
  """Training cannot go on (e.g. a non-finite loss)."""


class OutputError(JaxvadError, RuntimeError):
  """An output cannot be written: it would overwrite an input, its folder is read-only or
  missing, permission is denied, or the disk is full."""
