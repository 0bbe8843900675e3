"""The error families every stage and the CLI share.

Bad input is quarantined (the item goes to `rejects`, the run carries on); bad settings stop the run
before its first item. The CLI prints a `CantolabError`'s own message and exits with
`USER_ERROR_EXIT`; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

USER_ERROR_EXIT = 2  # a user error: bad input, bad settings, something missing (documented in README)


class CantolabError(Exception):
    """An error Cantolab raises on purpose; its message says what is wrong, where, and what to do."""


class InputError(CantolabError, ValueError):
    """One input (a file, a row, a take) cannot be processed: quarantine it and carry on with the rest."""


class ConfigError(CantolabError, ValueError):
    """A setting is wrong or missing: stop before the first item is processed."""
