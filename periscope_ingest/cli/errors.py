"""The errors a command reports to the user in one line, and the exit code each one means."""

from __future__ import annotations


class CliError(Exception):
    """A problem to tell the user in one line."""


class UsageError(CliError):
    """The command line asks for something impossible (exit code 2, like a bad argument)."""
