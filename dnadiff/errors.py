"""Error text for people: one line per error, whatever the library underneath printed."""

from __future__ import annotations

WORKER_PREFIX = "Caught "  # torch's DataLoader re-raises a worker's error as "Caught X in DataLoader worker ..."


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its class name when it has none).

    An error re-raised by a DataLoader worker carries the worker's traceback as its message; the
    line that counts is the original error's, its last line.
    """
    text = str(err).strip()
    if isinstance(err, KeyError) and err.args:
        text = str(err.args[0])
    if text.startswith(WORKER_PREFIX) and "\nOriginal Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1].strip()
        head, sep, message = last.partition(": ")
        text = message if sep and " " not in head else last  # "package.module.SomeError: message"
    return text.splitlines()[0] if text else type(err).__name__
