"""Error text for people: one line per error, whatever the library underneath printed."""

from __future__ import annotations


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its class name when it has none)."""
    text = str(err).strip()
    if isinstance(err, KeyError) and err.args:
        text = str(err.args[0])
    return text.splitlines()[0] if text else type(err).__name__
