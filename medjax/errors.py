"""The errors a user can act on: bad config, bad data, an unusable workdir.

Every CLI catches `UserError` and prints it as one line (`error: ...`, exit status 2) without a
traceback (`MEDJAX_DEBUG=1` shows it). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(ValueError):
  """A problem the user can fix: the message says what and where."""


class ConfigError(UserError):
  """An invalid or inconsistent config field or flag."""


class DataError(UserError):
  """Bad or inconsistent input data (missing files, bad labels, wrong sizes, duplicates...)."""


class WorkdirError(UserError):
  """The workdir cannot be used: another run's config or data, a lock held, no space left."""
