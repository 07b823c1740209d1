"""Errors that mean "bad input": the CLI prints them as one line and exits with code 2."""

from __future__ import annotations


class UsageError(Exception):
    """The user's target, options or model definition cannot be used; the message says why."""
