"""Every pattern that validates a whole text matches all of it: no trailing newline slips past
a final ``$`` (``re.match``/``re.search`` let ``$`` match before one), and digits are ASCII."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from broker.api.middleware import _client_request_id
from broker.errors import BadRequest, PolicyError, TokenInvalid
from broker.names import checked_name
from broker.policy.loader import load_policy_text
from broker.policy.schema import python_pattern
from broker.store import admin_tokens
from broker.store.sqlfiles import _MIGRATION_NAME
from hsm.provision import kek_versions


@pytest.mark.parametrize("name", ["disk-key\n", "disk-key\r", "\ndisk-key", "disk key"])
def test_a_name_with_a_newline_or_space_is_refused(name: str) -> None:
    with pytest.raises(BadRequest) as refused:
        checked_name(name, "key")
    assert refused.value.detail == (
        f"key name {name!r} is not allowed: 1-128 of a-z 0-9 . _ - starting with a letter or digit"
    )


def test_good_names_pass_unchanged() -> None:
    assert checked_name("disk-key", "key") == "disk-key"
    assert checked_name("a" * 128, "policy") == "a" * 128


def test_a_client_request_id_with_a_trailing_newline_is_not_kept() -> None:
    assert _client_request_id({"headers": [(b"x-request-id", b"abc-1")]}) == "abc-1"
    assert _client_request_id({"headers": [(b"x-request-id", b"abc-1\n")]}) is None


def test_admin_token_parts_must_be_exactly_hex() -> None:
    token_id, secret = "0123456789abcdef", "ab" * 32
    assert admin_tokens.is_token_id(token_id)
    assert not admin_tokens.is_token_id(token_id + "\n")
    db = cast(Any, None)  # malformed tokens are refused before the database is asked
    for presented in (f"kb_{token_id}\n_{secret}", f"kb_{token_id}_{secret}\n"):
        with pytest.raises(TokenInvalid, match="admin token is malformed"):
            _run(admin_tokens.authenticate(db, presented))


def _run(coroutine: Any) -> Any:
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the coroutine awaited something")


class _Object:
    def __init__(self, label: str) -> None:
        self.label = label

    def __getitem__(self, attribute: object) -> str:
        return self.label


class _Session:
    def __init__(self, labels: list[str]) -> None:
        self.labels = labels

    def get_objects(self, template: object) -> list[_Object]:
        return [_Object(label) for label in self.labels]


def test_kek_versions_are_read_from_exact_ascii_labels() -> None:
    labels = ["v1", "v2\n", "v\u0663", "v10"]  # \u0663: ARABIC-INDIC DIGIT THREE
    session = _Session([f"keybroker-kek-{label}" for label in labels])
    assert kek_versions(cast(Any, session)) == [1, 10]


def test_migration_file_names_are_matched_whole() -> None:
    assert _MIGRATION_NAME.fullmatch("0002_release.sql") is not None
    assert _MIGRATION_NAME.fullmatch("0002_release.sql\n") is None
    assert _MIGRATION_NAME.fullmatch("\u0660\u0660\u0660\u0662_release.sql") is None


# --- the policy schema: ECMA-262 patterns, where "$" is the end of the input ----------------


@pytest.mark.parametrize(
    ("pattern", "python"),
    [
        ("^[a-z]$", "^[a-z]\\Z"),
        ("^pcrs\\.([0-9]|[12][0-9]|3[01])$", "^pcrs\\.([0-9]|[12][0-9]|3[01])\\Z"),
        ("^[$]x$", "^[$]x\\Z"),  # a "$" in a class is a character
        ("^a\\$$", "^a\\$\\Z"),  # so is an escaped one
        ("^[\\]$]$", "^[\\]$]\\Z"),  # an escaped "]" does not close the class
    ],
)
def test_schema_patterns_become_python_with_the_same_meaning(pattern: str, python: str) -> None:
    assert python_pattern(pattern) == python


def _policy(name: str, claim: str) -> str:
    require = [{"claim": claim, "equals": 0, "reason": "r"}]
    return json.dumps(
        {
            "format": "keybroker-policy/1",
            "name": name,
            "version": 1,
            "admit": {"snp": {"require": require}},
        }
    )


def test_a_policy_name_or_claim_path_with_a_trailing_newline_is_refused() -> None:
    assert load_policy_text(_policy("p", "vmpl"), source="x", is_json=True).name == "p"
    with pytest.raises(PolicyError) as refused:
        load_policy_text(_policy("p\n", "vmpl\n"), source="x", is_json=True)
    text = str(refused.value)
    assert '$.name: "p\\n" is not a name' in text
    assert '$.admit.snp.require[0].claim: "vmpl\\n" is not a dotted claim path' in text
