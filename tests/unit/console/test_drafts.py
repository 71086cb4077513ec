"""The editor's drafts (broker/console/drafts.py): loaded, linted, shown as YAML."""

from __future__ import annotations

import json

from broker.console.drafts import NEW_DRAFT, as_yaml, check

VALID = """format: keybroker-policy/1
name: p
version: 1
admit:
  snp:
    signer: {roots: [amd]}
    insecure_allow_debug: true
"""


def test_the_new_draft_is_valid_and_denies_everything() -> None:
    checked = check(NEW_DRAFT)
    assert checked.policy is not None
    assert checked.problems == []


def test_every_problem_has_its_line_and_path() -> None:
    checked = check(VALID.replace("version: 1", "version: one") + "colour: red\n")
    assert checked.policy is None
    found = {(p["line"], p["path"]) for p in checked.problems}
    assert (3, "$.version") in found
    assert (8, "$.colour") in found
    assert checked.to_json()["valid"] is False


def test_warnings_of_a_valid_draft_are_listed() -> None:
    checked = check(VALID)
    assert checked.policy is not None
    codes = {w["code"] for w in checked.warnings}
    assert "debug-allowed" in codes
    assert checked.to_json() == {
        "valid": True,
        "problems": [],
        "warnings": checked.warnings,
    }


def test_text_that_is_not_yaml_is_one_problem() -> None:
    checked = check("admit: [unclosed\n")
    assert checked.policy is None
    assert len(checked.problems) == 1


def test_a_stored_version_reads_back_as_yaml_naming_the_policy_first() -> None:
    stored = json.dumps(
        {"admit": {}, "format": "keybroker-policy/1", "name": "p", "version": 3},
        sort_keys=True,
    )
    text = as_yaml(stored)
    assert text.splitlines()[:4] == [
        "format: keybroker-policy/1",
        "name: p",
        "version: 3",
        "admit: {}",
    ]
    assert check(text).policy is not None
    assert check(text).digest != check(text + "\n").digest
