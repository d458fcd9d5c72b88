"""Errors that several layers raise or catch: the data layer raises :class:`MediaError` and the engine counts it;
the application raises :class:`UserError` and the CLI prints it as one line."""

from __future__ import annotations


class MediaError(ValueError):
    """A media file (video or frame folder) that exists but cannot be decoded; the message names the file."""


class UserError(Exception):
    """An error caused by the user's input that is not a bad value of one argument (an output that exists, a
    missing optional package): the CLI reports it as one line, exit code 2."""
