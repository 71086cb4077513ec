"""Hostile policy documents: each refused with a positioned PolicyError, never another
exception (the classes the fuzz campaign found, docs/reliability.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from broker.errors import PolicyError
from broker.policy import load_policy, load_policy_text
from broker.policy.source import MAX_NESTING, _Loader, nesting_error

HEAD = "format: keybroker-policy/1\nname: p\nversion: 1\n"
JSON_HEAD = '{"format": "keybroker-policy/1", "name": "p", "version": 1, '


def refused(text: str, **kwargs: Any) -> list[dict[str, Any]]:
    with pytest.raises(PolicyError) as caught:
        load_policy_text(text, source="p", **kwargs)
    return caught.value.problems


def messages(text: str, **kwargs: Any) -> list[str]:
    return [problem["message"] for problem in refused(text, **kwargs)]


# --- nesting ---------------------------------------------------------------------------------

DEPTHS = [MAX_NESTING, 100, 500, 900, 1000, 5000, 100_000]


def _yaml_flow(depth: int) -> str:
    return HEAD + "admit: " + "[" * depth + "]" * depth + "\n"


def _yaml_block(depth: int) -> str:
    return HEAD + "admit:\n" + "".join(" " * (i + 1) + "-\n" for i in range(depth))


def _json_lists(depth: int) -> str:
    return JSON_HEAD + '"admit": ' + "[" * depth + "]" * depth + "}"


def _json_objects(depth: int) -> str:
    return JSON_HEAD + '"admit": ' + '{"a": ' * depth + "1" + "}" * depth + "}"


KINDS = {
    "yaml-flow": (_yaml_flow, False),
    "yaml-block": (_yaml_block, False),
    "json-lists": (_json_lists, True),
    "json-objects": (_json_objects, True),
}


# Block nesting grows the text quadratically: past 5,000 levels it is only "larger than 1 MiB".
@pytest.mark.parametrize(
    ("kind", "depth"),
    [(k, d) for k in KINDS for d in DEPTHS if not (k == "yaml-block" and d > 5000)],
)
def test_any_nesting_is_a_policy_error(kind: str, depth: int) -> None:
    make, is_json = KINDS[kind]
    text = make(depth)
    problems = refused(text, is_json=is_json)
    if len(text) > 1 << 20:
        assert problems[0]["message"] == "larger than 1 MiB"
    elif depth + 1 > MAX_NESTING:  # the document's top level is one more level
        assert any("nested deeper than 64 levels" in p["message"] for p in problems)


@pytest.mark.parametrize("opening", ["[", "{"])
def test_flow_nesting_stops_the_scanner_at_the_bound(
    monkeypatch: pytest.MonkeyPatch, opening: str
) -> None:
    """Each ``[`` or ``{`` may start a simple key, so PyYAML scanned up to 1,024 characters
    of them ahead, with work proportional to the depth at each (2.5 s for 900, found by the
    campaign as a slow input): the scanner now stops at the 65th."""
    opened = []
    original = _Loader.fetch_flow_collection_start

    def counting(self: _Loader, token_class: Any) -> None:
        opened.append(token_class)
        original(self, token_class)

    monkeypatch.setattr(_Loader, "fetch_flow_collection_start", counting)
    problems = refused(HEAD + "admit: " + opening * 5000 + "\n")
    assert [p["message"] for p in problems] == ["YAML: nested deeper than 64 levels"]
    assert len(opened) <= MAX_NESTING + 1


def test_nesting_is_refused_with_little_stack_left() -> None:
    """A request handler runs with part of the stack used: the bound is the loader's own."""

    def nested(frames: int) -> list[dict[str, Any]]:
        if frames:
            return nested(frames - 1)
        return refused(_json_lists(900), is_json=True)

    headroom = sys.getrecursionlimit() - 250
    assert "nested deeper than 64 levels" in nested(headroom)[0]["message"]


def test_deepest_legitimate_conditions_load() -> None:
    """Conditions nested to the limit still load: the bound refuses only absurd documents."""
    condition: dict[str, Any] = {"claim": "debug", "equals": False}
    levels = 1 + 1 + 1 + 1  # document, admit, section, require (list)
    while levels + 2 <= MAX_NESTING:  # each "not" adds a mapping and its value's mapping
        condition = {"not": condition}
        levels += 1
    document = {
        "format": "keybroker-policy/1",
        "name": "deep",
        "version": 1,
        "admit": {"snp": {"require": [condition]}},
    }
    assert load_policy_text(json.dumps(document), is_json=True).name == "deep"


def test_nesting_error_is_iterative() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    error = nesting_error(deep, "<request>")
    assert isinstance(error, PolicyError)
    assert nesting_error([[1]], "<request>") is None


# --- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("9" * 4301, "integer of 4301 digits: integers here fit in 64 bits"),
        ("0x" + "f" * 5000, "integer of 5002 digits: integers here fit in 64 bits"),
        ("0o" + "7" * 5000, "integer of 5002 digits: integers here fit in 64 bits"),
        ("18446744073709551616", "integer beyond 64 bits"),
        ("-18446744073709551616", "integer beyond 64 bits"),
    ],
)
def test_huge_yaml_integers(value: str, message: str) -> None:
    assert messages(HEAD + f"admit:\n  snp:\n    minimum_tcb:\n      snp: {value}\n") == [message]


def test_huge_json_integers() -> None:
    assert messages(
        JSON_HEAD + '"admit": {"snp": {"minimum_tcb": {"snp": ' + "9" * 4301 + "}}}}", is_json=True
    )[0].startswith("JSON: Exceeds the limit (4300 digits)")
    big = JSON_HEAD + '"admit": {"snp": {"minimum_tcb": {"snp": ' + "9" * 30 + "}}}}"
    assert messages(big, is_json=True) == ["integer beyond 64 bits"]


@pytest.mark.parametrize(
    ("scalar", "message"),
    [
        ("!!int abc", "'abc' is not an integer"),
        ("!!int 0xzz", "'0xzz' is not an integer"),
        ("!!int ''", "'' is not an integer"),
        ("!!float abc", "'abc' is not a number"),
        ("!!float 1.5", "1.5: numbers here are integers"),
        ("!!float inf", "inf: numbers here are integers"),
        ("1.0", "1.0: numbers here are integers"),
        ("1e400", "inf: numbers here are integers"),
    ],
)
def test_bad_number_tags_and_floats(scalar: str, message: str) -> None:
    problems = refused(f"format: keybroker-policy/1\nname: p\nversion: {scalar}\nadmit: {{}}\n")
    assert [(p["line"], p["path"], p["message"]) for p in problems] == [(3, "$.version", message)]


def test_integral_json_float_is_refused_not_canonicalised() -> None:
    """jsonschema counts 1.0 as an integer; the canonical form carries no float."""
    text = JSON_HEAD + '"admit": {"snp": {"minimum_tcb": {"snp": 5.0}}}}'
    assert refused(text, is_json=True) == [
        {
            "file": "p",
            "line": 1,
            "column": 102,
            "path": "$.admit.snp.minimum_tcb.snp",
            "message": "5.0: numbers here are integers",
        }
    ]


# --- text ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "is_json"),
    [
        (HEAD + 'description: "\\ud800"\nadmit: {}\n', False),
        (HEAD + 'admit: {}\n"\\udc00": 1\n', False),
        (JSON_HEAD + '"description": "\\ud800", "admit": {}}', True),
        (JSON_HEAD + '"admit": {"\\udfff": {}}}', True),
    ],
)
def test_lone_surrogates(text: str, is_json: bool) -> None:
    assert messages(text, is_json=is_json) == [
        "text holds a lone surrogate (not a Unicode scalar value, so not UTF-8)"
    ]


def test_json_surrogate_pair_is_one_character() -> None:
    """PyYAML leaves an escaped pair as two surrogates; the JSON value is the character."""
    text = JSON_HEAD + '"description": "\\ud83d\\ude00", "admit": {}}'
    assert load_policy_text(text, is_json=True).description == "\U0001f600"


# --- references ------------------------------------------------------------------------------


def test_nul_in_a_reference_path(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + 'references: ["a\\0b.yaml"]\nadmit: {}\n')
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert sorted(p["message"] for p in caught.value.problems) == [
        "a\0b.yaml: cannot read: NUL in the path",  # at the policy's references entry
        "cannot read: NUL in the path",  # at the reference file
    ]
