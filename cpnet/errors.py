"""Errors that several layers raise or catch (the data layer raises them, the engine counts them)."""

from __future__ import annotations


class MediaError(ValueError):
    """A media file (video or frame folder) that exists but cannot be decoded; the message names the file."""
