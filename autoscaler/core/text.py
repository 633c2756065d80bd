"""Text from outside (a log, a policy file, a label) made safe to print to a terminal."""

from __future__ import annotations


def printable(text: str) -> str:
    """`text` holding some from a log or a file (a service name, a reason, a key a policy
    file spells) as the console may show it: a character that is not printable (an escape
    sequence that would clear the screen or retitle the terminal, a line break, a bidi
    override) written as its escape, `\\x1b`."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
