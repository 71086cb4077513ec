"""Loading: schema errors with the line and JSON path, strict YAML, JSON, references, the
canonical form and digest, and the shipped policies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from broker.errors import PolicyError
from broker.policy import load_policy, load_policy_text, read_document
from broker.policy.lint import CODES, LIMITS_CODES, UNACKNOWLEDGEABLE
from broker.policy.model import canonical_json
from broker.policy.schema import SCHEMA
from broker.policy.source import MAX_DOCUMENT_BYTES

from .support import DATA, POLICIES, REPO

HEAD = "format: keybroker-policy/1\nname: p\nversion: 1\n"


def problems(text: str, **kwargs: Any) -> list[tuple[int | None, str, str]]:
    with pytest.raises(PolicyError) as caught:
        load_policy_text(text, source="p.yaml", **kwargs)
    return [(p["line"], p["path"], p["message"]) for p in caught.value.problems]


# (document, line, JSON path, message)
SCHEMA_ERRORS = [
    (
        HEAD + "admit:\n  snp:\n    minimum_tcb:\n      bootlader: 2\n",
        7,
        "$.admit.snp.minimum_tcb.bootlader",
        "unknown key 'bootlader' (did you mean 'bootloader'?); "
        "allowed here: bootloader, fmc, microcode, snp, tee",
    ),
    (
        HEAD + "admit:\n  snp:\n    insecure_allow_debug: yes\n",
        6,
        "$.admit.snp.insecure_allow_debug",
        "expected boolean (true admits guests and enclaves in debug mode, whose memory the "
        'host can read; never for production keys), found string "yes"; write true or false: '
        "yes, no, on and off are strings here",
    ),
    (
        HEAD + "admit:\n  sev:\n    {}\n",
        5,
        "$.admit.sev",
        "unknown key 'sev'; allowed here: any, nitro, sgx, snp, snp-vtpm, tdx, tdx-vtpm, tpm",
    ),
    (
        "format: keybroker-policy/1\nname: p\nadmit: {}\n",
        1,
        "$",
        "missing key 'version'",
    ),
    (
        "format: keybroker-policy/2\nname: p\nversion: 1\nadmit: {}\n",
        1,
        "$.format",
        'must be "keybroker-policy/1", found "keybroker-policy/2"',
    ),
    (
        HEAD.replace("name: p", "name: Disk Key") + "admit: {}\n",
        2,
        "$.name",
        "\"Disk Key\" is not a name: lowercase letters, digits, '.', '_' and '-', "
        "starting with a letter or digit, at most 64 characters",
    ),
    (
        HEAD + "admit:\n  snp:\n    require:\n      - {claim: vmpl, equals: 0, in: [1]}\n",
        7,
        "$.admit.snp.require[0]",
        "expected a condition is {claim: PATH, OPERATOR: VALUE} with exactly one operator "
        "(equals, in, at_least, greater_than, at_most, less_than, hex_equals, hex_in, exists), "
        "or exactly one of {all_of: [...]}, {any_of: [...]}, {not: {...}}; each may carry a "
        "reason; found keys: claim, equals, in",
    ),
    (
        HEAD + "admit:\n  snp:\n    require:\n      - {claim: vmpl, at_least: '1'}\n",
        7,
        "$.admit.snp.require[0].at_least",
        'expected integer, found string "1"',
    ),
    (
        HEAD + "admit:\n  snp:\n    require:\n      - {claim: Reported_TCB, exists: true}\n",
        7,
        "$.admit.snp.require[0].claim",
        '"Reported_TCB" is not a dotted claim path such as reported_tcb.snp, rtmr.0, '
        "signer.origin or vtpm.runtime_data.vm-configuration.secure-boot (a lowercase "
        "snake_case name, then names, which may hold '-' and capitals as the evidence's JSON "
        "does, and list indexes)",
    ),
    (
        HEAD + "admit:\n  snp:\n    require:\n      - {claim: host_data, hex_equals: 0102}\n",
        7,
        "$.admit.snp.require[0].hex_equals",
        "expected string (bytes as an even number of hex digits, in either case), found number "
        "102; quote hex values made only of digits: YAML reads them as numbers",
    ),
    (
        HEAD + "admit:\n  tdx:\n    minimum_tcb: {tcb_status: [UpToDate, Revoked]}\n",
        6,
        "$.admit.tdx.minimum_tcb.tcb_status[1]",
        '"Revoked" is not one of "UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", '
        '"ConfigurationAndSWHardeningNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"',
    ),
    (
        HEAD + "admit:\n  nitro:\n    minimum_tcb: {snp: 1}\n",
        6,
        "$.admit.nitro.minimum_tcb",
        "unknown key 'minimum_tcb'; allowed here: acknowledged_warnings, freshness, "
        "insecure_allow_debug, reference_values, require, signer",
    ),
    (
        HEAD + "admit:\n  any:\n    freshness: {max_evidence_age: 5 minutes}\n",
        6,
        "$.admit.any.freshness.max_evidence_age",
        '"5 minutes" is not a duration: a positive whole number followed by s, m, h or d '
        "(90s, 5m, 24h, 30d)",
    ),
    (
        HEAD + "admit:\n  snp:\n    acknowledged_warnings: {debug-allowed: we know}\n",
        6,
        '$.admit.snp.acknowledged_warnings["debug-allowed"]',
        "'debug-allowed' is not a known name; known: no-measurement, infrastructure-signer, "
        "no-minimum-tcb, any-tee, unknown-claim, instance-unidentified",
    ),
    (
        HEAD + "reference_values:\n  imgs:\n    tee: snp\n    values:\n"
        "      - measurement: abcd\n" + "admit: {}\n",
        8,
        "$.reference_values.imgs.values[0].measurement",
        '"abcd" is not 48 bytes (SHA-384) as 96 hex digits',
    ),
    (
        HEAD + "reference_values:\n  imgs:\n    tee: tdx\n    values:\n"
        "      - {rtmr.0: '" + "00" * 48 + "'}\n" + "admit: {}\n",
        8,
        "$.reference_values.imgs.values[0]",
        "missing key 'mr_td'",
    ),
    (
        HEAD + "admit:\n  snp:\n    reference_values: [nothing]\n",
        6,
        "$.admit.snp.reference_values[0]",
        "no reference set named 'nothing' (known: none)",
    ),
    (
        HEAD + "reference_values:\n  imgs:\n    tee: sgx\n    values:\n"
        "      - {mr_signer: '"
        + "00" * 32
        + "'}\n"
        + "admit:\n  snp:\n    reference_values: [imgs]\n",
        11,
        "$.admit.snp.reference_values[0]",
        "reference set 'imgs' holds sgx values; the snp section cannot use it",
    ),
]


@pytest.mark.parametrize(("text", "line", "path", "message"), SCHEMA_ERRORS)
def test_schema_errors_name_the_line_and_path(
    text: str, line: int, path: str, message: str
) -> None:
    assert (line, path, message) in problems(text)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(DATA / "bad-policy.yaml")
    assert [(p["line"], p["column"], p["path"]) for p in caught.value.problems] == [
        (7, 7, "$.admit.snp.minimum_tcb.bootlader"),
        (8, 27, "$.admit.snp.insecure_allow_debug"),
    ]
    assert caught.value.problems[0]["file"] == str(DATA / "bad-policy.yaml")
    assert str(caught.value).startswith(f"{DATA / 'bad-policy.yaml'}:7:7: ")
    assert caught.value.type == "policy-invalid"


# --- the YAML dialect -----------------------------------------------------------------------

YAML_ERRORS = [
    (HEAD + "name: q\nadmit: {}\n", 4, "$.name", "duplicate key 'name' (first at line 2)"),
    (
        HEAD + "admit: &a {}\nextra: *a\n",
        5,
        "$",
        "YAML: YAML aliases (*name) are not allowed: write the value out",
    ),
    (HEAD + "admit: !!set {a}\n", 4, "$.admit", "YAML tag tag:yaml.org,2002:set is not allowed"),
    (
        HEAD + "admit: !!python/object:os.system {}\n",
        4,
        "$.admit",
        "YAML tag tag:yaml.org,2002:python/object:os.system is not allowed",
    ),
    (
        HEAD + "admit: {}\n---\nadmit: {}\n",
        5,
        "$",
        "YAML: expected a single document in the stream, but found another document",
    ),
    (
        HEAD + "admit: [\n",
        5,
        "$",
        "YAML: while parsing a flow node, expected the node content, but found '<stream end>'",
    ),
    ("", 1, "$", "the document is empty"),
]


@pytest.mark.parametrize(("text", "line", "path", "message"), YAML_ERRORS)
def test_strict_yaml(text: str, line: int, path: str, message: str) -> None:
    assert (line, path, message) in problems(text)


@pytest.mark.parametrize(
    ("scalar", "value"),
    [("010", 10), ("0x1f", 31), ("0o17", 15), ("1_0", "1_0"), ("2023-01-01", "2023-01-01")],
)
def test_yaml_12_scalars(scalar: str, value: object) -> None:
    text = HEAD + f"admit:\n  snp:\n    require: [{{claim: vmpl, in: [{scalar}]}}]\n"
    compare = load_policy_text(text).sections[0].require[0]
    assert compare.value == (value,)  # type: ignore[union-attr]


def test_json_policy_is_accepted() -> None:
    loaded = load_policy(DATA / "json-policy.json")
    assert (loaded.name, loaded.version) == ("json-policy", 2)
    assert [r.name for r in loaded.reference_sets] == ["images"]


def test_json_duplicate_keys_are_refused() -> None:
    with pytest.raises(PolicyError, match="duplicate key 'name'"):
        load_policy(DATA / "json-duplicate.json")


def whole_problems(path: Path) -> list[tuple[str, int | None, str, str]]:
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    return [(p["file"], p["line"], p["path"], p["message"]) for p in caught.value.problems]


def test_a_file_over_1_mib_is_refused(tmp_path: Path) -> None:
    at_limit, over = tmp_path / "at-limit.yaml", tmp_path / "over.yaml"
    comment = b"#" + b"x" * (MAX_DOCUMENT_BYTES - 2) + b"\n"
    at_limit.write_bytes(comment)
    over.write_bytes(comment + b"\n")
    assert len(comment) == MAX_DOCUMENT_BYTES == 1 << 20
    # at the limit the size passes and the (comment-only) document is read
    assert whole_problems(at_limit) == [(str(at_limit), 1, "$", "the document is empty")]
    assert whole_problems(over) == [(str(over), None, "$", "larger than 1 MiB")]


def test_text_over_1_mib_is_refused() -> None:
    text = HEAD + "admit: {}\n#" + "x" * MAX_DOCUMENT_BYTES
    assert problems(text) == [(None, "$", "larger than 1 MiB")]


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(HEAD.encode() + "description: café\n".encode("latin-1"))
    offset = len(HEAD) + len("description: caf")
    assert whole_problems(path) == [(str(path), None, "$", f"not UTF-8 (byte {offset})")]


def test_unreadable_file() -> None:
    with pytest.raises(PolicyError, match="cannot read: No such file or directory"):
        load_policy(DATA / "absent.yaml")


# --- reference files ------------------------------------------------------------------------


def test_reference_file_problem_is_reported_where_it_is() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(DATA / "uses-broken-refs.yaml")
    found = {(Path(p["file"]).name, p["line"], p["path"]) for p in caught.value.problems}
    assert found == {
        ("uses-broken-refs.yaml", 5, "$.references[0]"),
        ("refs-broken.yaml", 7, "$.reference_values.images.values[0].measurement"),
    }


def test_missing_reference_file() -> None:
    with pytest.raises(PolicyError, match=r"no-such-file.yaml: cannot read"):
        load_policy(DATA / "uses-missing-refs.yaml")


def test_a_set_name_must_be_unique_across_files() -> None:
    with pytest.raises(PolicyError, match="reference set 'images' is defined in both"):
        load_policy(DATA / "uses-clashing-refs.yaml")


def test_references_need_a_base_directory() -> None:
    text = HEAD + "references: [refs-images.yaml]\nadmit: {}\n"
    assert (4, "$.references[0]", "no base directory to resolve references") in problems(text)


def test_an_inline_set_may_not_reuse_a_shared_name() -> None:
    text = (
        HEAD + "references: [refs-images.yaml]\nreference_values:\n  images:\n    tee: snp\n"
        "    values:\n      - measurement: '" + "00" * 48 + "'\nadmit: {}\n"
    )
    assert problems(text, base_dir=DATA) == [
        (
            7,  # where the inline set's body starts
            "$.reference_values.images",
            f"reference set 'images' is also defined in {DATA / 'refs-images.yaml'}",
        )
    ]


def test_a_policy_is_not_a_reference_file() -> None:
    text = HEAD + "references: [default.yaml]\nadmit: {}\n"
    with pytest.raises(PolicyError) as caught:
        load_policy_text(text, source="p.yaml", base_dir=POLICIES)
    found = [(p["file"], p["line"], p["path"], p["message"]) for p in caught.value.problems]
    default = POLICIES / "default.yaml"
    line = default.read_text().splitlines().index("format: keybroker-policy/1") + 1
    assert found == [
        (str(default), line, "$.format", "must be keybroker-references/1"),
        ("p.yaml", 4, "$.references[0]", "default.yaml: must be keybroker-references/1"),
    ]


def test_a_reference_file_is_not_a_policy() -> None:
    with pytest.raises(PolicyError, match="is keybroker-references/1, not keybroker-policy/1"):
        load_policy(DATA / "refs-images.yaml")
    assert read_document(DATA / "refs-images.yaml").policy is None


# --- canonical form and digest --------------------------------------------------------------

USES_IMAGES = HEAD + "references: [{file}]\nadmit:\n  snp:\n    reference_values: [images]\n"


def test_digest_covers_the_shared_reference_values() -> None:
    first = load_policy_text(USES_IMAGES.format(file="refs-images.yaml"), base_dir=DATA)
    second = load_policy_text(USES_IMAGES.format(file="refs-images-v2.yaml"), base_dir=DATA)
    assert first.digest() != second.digest()


def test_canonical_form_is_a_policy_with_the_same_digest() -> None:
    loaded = load_policy(DATA / "json-policy.json")
    canonical = canonical_json(loaded.to_json()).decode()
    again = load_policy_text(canonical, is_json=True)
    assert again == loaded
    assert again.digest() == loaded.digest()
    # hex is lowercased, the shared set is inlined, the references list is gone
    assert '"measurement":"b07af962' in canonical
    assert "references" not in canonical


def test_only_the_sets_used_are_part_of_the_policy() -> None:
    text = HEAD + "references: [refs-other.yaml]\nadmit:\n  snp:\n    reference_values: [images]\n"
    loaded = load_policy_text(text, base_dir=DATA)
    assert [r.name for r in loaded.reference_sets] == ["images"]


#: Digests of the shipped policies, pinned: the canonical form (and so every audit record's
#: policy identity) must not change with the serialiser behind it.
PINNED_DIGESTS = {
    "azure-cvm-disk-key.yaml": "0c33ba9cb26c82deac0caac865b89321ec47bc098af9ddaa6aaaf4eff30aed84",
    "gce-shielded-vm.yaml": "6096c56f80f33d8c0e12cda722276d95d1f2416c929100984fc67f5e809be78a",
    "default.yaml": "aa6b39ff81970dd30058a49baefa0fbf575404b6ef349a7f3ea71bf29b1b4c38",
    "insecure-debug-example.yaml": (
        "20a99824801bdea6c2a45dcd380c02aa574a3669ac0933ae50f4f3352f59e515"
    ),
    "insecure-demo-simulated-nitro.yaml": (
        "7fd47e7b40a449355a453f8d107dd570476a7df9eb412e9c38c3d70becef48d5"
    ),
    "insecure-demo-simulated-snp.yaml": (
        "839c94ff8e714a704eabe7506beb314e4b05a8c4f1faf58da939ef59e36548eb"
    ),
    "nitro-enclave.yaml": "cf19978491844cb76f2bd965fcac89c58ee8d9df16b1bcf0993c962816c2f449",
    "sgx-enclave-data-key.yaml": "50c6cfe451e3b2f9e63dcc4c816184c0c48371a095c7fedad5b8c265d5950f8f",
    "snp-production-disk-key.yaml": (
        "1b75958bca92d446fd7d15d8862e4edab9eec3543f1871e72ed66f29e844246a"
    ),
    "tdx-production.yaml": "62f1788705b1cc3743355346034d60125c7095b6f64412c1878e7f53ff4a257f",
}


@pytest.mark.parametrize(("name", "digest"), sorted(PINNED_DIGESTS.items()))
def test_shipped_policy_digests_are_pinned(name: str, digest: str) -> None:
    assert load_policy(POLICIES / name).digest() == digest


UNICODE_POLICY = (
    "format: keybroker-policy/1\nname: unicode\nversion: 3\n"
    'description: "Schlüssel für \U0001d518 \\u2028 \\x7f \\t \\u001f \\" \\\\ end"\n'
    "admit:\n  snp:\n    require:\n"
    '      - {claim: vmpl, in: [0, 1], reason: "ä ✓ \U0001f600"}\n'
)


def test_canonical_form_of_non_ascii_and_escaped_text_is_pinned() -> None:
    loaded = load_policy_text(UNICODE_POLICY)
    assert loaded.description == 'Schlüssel für \U0001d518 \u2028 \x7f \t \x1f " \\ end'
    assert (
        canonical_json(loaded.to_json())
        == (
            '{"admit":{"snp":{"require":[{"claim":"vmpl","in":[0,1],"reason":"ä ✓ \U0001f600"}]}},'
            '"description":"Schlüssel für \U0001d518 \u2028 \x7f \\t \\u001f \\" \\\\ end",'
            '"format":"keybroker-policy/1","name":"unicode","version":3}'
        ).encode()
    )
    assert loaded.digest() == "872e7ca5c21f97848fc33d6e28867cc29d571677258e402b8c14a6b873030f3e"


def test_comments_and_layout_do_not_change_the_digest() -> None:
    compact = load_policy_text(HEAD + "admit: {snp: {require: [{claim: vmpl, equals: 0}]}}\n")
    spacious = load_policy_text(
        "# a comment\n" + HEAD + "admit:\n  snp:\n    require:\n      - claim: vmpl  # why\n"
        "        equals: 0\n"
    )
    assert compact.digest() == spacious.digest()
    assert len(compact.digest()) == 64


# --- the published schema and the shipped policies ------------------------------------------


def test_published_schema_is_the_package_schema() -> None:
    package = REPO / "broker" / "policy" / "schema.json"
    assert (POLICIES / "schema.json").read_bytes() == package.read_bytes()
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_acknowledgeable_codes_match_the_linter() -> None:
    names = SCHEMA["$defs"]["acknowledged"]["propertyNames"]["enum"]
    assert set(names) == set(CODES) - UNACKNOWLEDGEABLE - LIMITS_CODES
    limits = SCHEMA["$defs"]["limits"]["properties"]["acknowledged_warnings"]
    assert set(limits["propertyNames"]["enum"]) == LIMITS_CODES


SHIPPED = sorted(p.name for p in POLICIES.glob("*.yaml"))


def test_the_expected_policies_ship() -> None:
    assert SHIPPED == [
        "azure-cvm-disk-key.yaml",
        "default.yaml",
        "gce-shielded-vm.yaml",
        "insecure-debug-example.yaml",
        "insecure-demo-simulated-nitro.yaml",
        "insecure-demo-simulated-snp.yaml",
        "nitro-enclave.yaml",
        "sgx-enclave-data-key.yaml",
        "snp-production-disk-key.yaml",
        "tdx-production.yaml",
    ]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_policy_loads(name: str) -> None:
    loaded = load_policy(POLICIES / name)
    assert loaded.name == name.removesuffix(".yaml")
    json.dumps(loaded.to_json())
