"""Two versions side by side (broker/console/sidebyside.py)."""

from __future__ import annotations

from broker.console.sidebyside import pretty, rows


def test_equal_changed_removed_and_added_lines_pair_up() -> None:
    old = ["a", "b", "c", "d"]
    new = ["a", "B", "c", "e", "f"]
    found = [(r.left_number, r.left, r.right_number, r.right, r.change) for r in rows(old, new)]
    assert found == [
        (1, "a", 1, "a", "equal"),
        (2, "b", 2, "B", "replace"),
        (3, "c", 3, "c", "equal"),
        (4, "d", 4, "e", "replace"),
        (None, "", 5, "f", "insert"),
    ]


def test_a_removed_line_is_left_only() -> None:
    found = rows(["a", "b", "c"], ["a", "c"])
    assert [(r.left_number, r.right_number, r.change) for r in found] == [
        (1, 1, "equal"),
        (2, None, "delete"),
        (3, 2, "equal"),
    ]


def test_stored_documents_are_shown_indented_and_sorted() -> None:
    assert pretty('{"b":1,"a":{"c":[1]}}') == [
        "{",
        '  "a": {',
        '    "c": [',
        "      1",
        "    ]",
        "  },",
        '  "b": 1',
        "}",
    ]
