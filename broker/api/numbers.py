"""Numbers read from a request's text (query strings, headers, path): ASCII digits only.

``str.isdigit`` admits the digits of every script and more: ``"\u0661\u0660".isdigit()`` is
true and ``int()`` reads it as 10 (ARABIC-INDIC DIGIT ONE, ZERO), so ``?limit=\u0661\u0660``
passed a check meant for ``?limit=10``; ``"\u00b2"`` (SUPERSCRIPT TWO) is a digit that
``int()`` refuses. A number in a request is written with 0-9 and nothing else.
"""

from __future__ import annotations


def is_ascii_digits(text: str) -> bool:
    """Whether ``text`` is one or more of the characters 0-9."""
    return text.isascii() and text.isdigit()
