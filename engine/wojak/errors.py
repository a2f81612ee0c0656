"""The root of wojak's own errors.

Every error wojak raises on purpose (a setting it cannot use, an engine already running, a
socket directory that is not this user's, a store that does not answer, ...) is a
``WojakError``, so a command line catches one type and prints it in one line. Each keeps the
built-in base it always had (``ValueError`` for bad input, ``RuntimeError`` for a state), so
code that caught those still does.

Standard library only: the sandbox Lambda package imports it.
"""

from __future__ import annotations


class WojakError(Exception):
    """An error of wojak's own; its message is meant for the operator, on one line."""


class ConfigError(WojakError, ValueError):
    """A setting, URL or configuration that cannot be used; the message names the setting."""


__all__ = ["ConfigError", "WojakError"]
