"""The CLI's readable output (broker/cli/tables.py): cells, tables, fields, --json."""

from __future__ import annotations

import argparse
import json

import pytest

from broker.cli.tables import cell, emit, field, fields, table


def test_cells_say_nothing_yes_no_and_join_lists() -> None:
    assert [cell(None), cell(""), cell(True), cell(False), cell(3)] == ["-", "-", "yes", "no", "3"]
    assert cell(["a", None, True]) == "a, -, yes"
    assert cell([]) == "-"
    assert cell({"b": 1, "a": None}) == '{"a":null,"b":1}'


def test_a_table_pads_each_column_to_its_widest_cell() -> None:
    rows = [{"name": "disk-key", "version": 12}, {"name": "k", "version": None}]
    text = table(rows, [("NAME", field("name")), ("VERSION", field("version"))])
    assert text.splitlines() == ["NAME      VERSION", "disk-key  12", "k         -"]
    assert table([], [("NAME", field("name"))]) == "NAME"


def test_fields_align_their_values() -> None:
    assert fields([("name", "k"), ("kms alias", None)]).splitlines() == [
        "name:      k",
        "kms alias: -",
    ]


def test_json_prints_one_document_else_the_readable_form(
    capsys: pytest.CaptureFixture[str],
) -> None:
    document = [{"locked": True}]
    emit(argparse.Namespace(json=True), document, lambda value: "table")
    assert json.loads(capsys.readouterr().out) == document
    emit(argparse.Namespace(json=False), document, lambda value: "table")
    assert capsys.readouterr().out == "table\n"
