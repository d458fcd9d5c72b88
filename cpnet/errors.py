"""Errors that several layers raise or catch: the data layer raises :class:`MediaError` and the engine counts it;
the application raises :class:`UserError` and the CLI prints it as one line."""

from __future__ import annotations

import re


class MediaError(ValueError):
    """A media file (video or frame folder) that exists but cannot be decoded; the message names the file."""


class UserError(Exception):
    """An error caused by the user's input that is not a bad value of one argument (an output that exists, a
    missing optional package): the CLI reports it as one line, exit code 2."""


def unloadable_checkpoint(path: object, error: BaseException) -> str:
    """Why ``torch.load(path, weights_only=True)`` refused a file, in cpnet's words: torch's own message advises
    loading with ``weights_only=False``, which would run whatever code the file holds, so it is never relayed."""
    try:
        with open(str(path), "rb") as f:
            head = f.read(4)
    except OSError as e:
        return f"{path} is not a loadable cpnet checkpoint: {e.strerror or e}"
    if head[:2] != b"PK" and head[:1] != b"\x80":  # neither torch's zip format nor a legacy pickle
        return (f"{path} is not a loadable cpnet checkpoint: not a PyTorch file at all (expected a checkpoint written "
                "by cpnet train or cpnet convert)")
    if "weights only" in str(error).lower() or "weights_only" in str(error):
        return (f"{path} is not a loadable cpnet checkpoint: it holds Python objects that cpnet does not unpickle "
                "(a checkpoint of another program, or tampered with); cpnet loads only tensors and plain data")
    return f"{path} is not a loadable cpnet checkpoint: damaged or cut short ({type(error).__name__})"


def one_line(error: BaseException) -> str:
    """The error's message on one line. An error raised in a DataLoader worker arrives re-raised with the worker's
    whole traceback as its message: keep the original error's own message, its last line."""
    text = str(error.args[0] if isinstance(error, KeyError) and error.args else error)
    if "\nOriginal Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = re.sub(r"^[\w.]+: ", "", last.strip(), count=1)  # 'cpnet.data.records.MediaError: <message>'
    return " ".join(text.split("\n"))
