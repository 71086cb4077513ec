"""Admin roles of TLS client certificates (broker/api/clientcert.py) and the settings that
turn them on."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from broker.api.clientcert import ClientRoles, load_client_roles, scope_subject, subject_of
from broker.cli.serve import tls_options
from broker.errors import ConfigurationError
from broker.localstate.democa import issue, make_ca
from broker.roles import Role
from broker.settings import Settings, validate


def _roles(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "roles.toml"
    path.write_text(text)
    return path


def test_the_file_maps_each_subject_to_its_role(tmp_path: Path) -> None:
    path = _roles(
        tmp_path,
        '[[client]]\nsubject = "CN=alice,O=Example Corp"\nrole = "key-custodian"\n'
        '[[client]]\nsubject = "CN=bob"\nrole = "auditor"\n',
    )
    assert load_client_roles(path) == {
        "CN=alice,O=Example Corp": Role.KEY_CUSTODIAN,
        "CN=bob": Role.AUDITOR,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[client]]\nsubject = "CN=a"\nrole = "root"\n', "role 'root' is not one of"),
        ('[[client]]\nsubject = "CN=a"\n', "must have exactly subject and role"),
        ('[[client]]\nsubject = "CN=a"\nrole = "admin"\nnote = "x"\n', "exactly subject and role"),
        ('[[client]]\nsubject = "CN=\u0430lice"\nrole = "admin"\n', "printable ASCII"),
        ('[[client]]\nsubject = ""\nrole = "admin"\n', "printable ASCII"),
        (
            '[[client]]\nsubject = "CN=a"\nrole = "admin"\n[[client]]\nsubject = "CN=a"\n'
            'role = "auditor"\n',
            "subject CN=a is listed twice",
        ),
        ("[clients]\nx = 1\n", "unknown tables clients"),
        ("[[client]\n", "admin_client_roles_file .*roles.toml: "),
    ],
)
def test_a_malformed_file_stops_the_broker_naming_why(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_client_roles(_roles(tmp_path, text))


def test_the_subject_is_rfc4514_text_most_specific_first() -> None:
    ca_key, ca = make_ca("test CA")
    _, certificate = issue(ca_key, ca, "alice")
    assert subject_of(certificate.public_bytes(serialization.Encoding.DER)) == "CN=alice"
    assert subject_of(None) is None
    assert subject_of(b"") is None


def test_the_scope_carries_the_subject_only_as_the_tls_extension_says() -> None:
    assert scope_subject({"extensions": {"tls": {"client_cert_name": "CN=alice"}}}) == "CN=alice"
    assert scope_subject({}) is None
    assert scope_subject({"extensions": {"tls": None}}) is None
    assert scope_subject({"extensions": {"tls": {"client_cert_name": 3}}}) is None


def test_settings_go_together(tmp_path: Path) -> None:
    tls = {"tls_cert_file": tmp_path / "c.pem", "tls_key_file": tmp_path / "k.pem"}
    ca = tmp_path / "ca.pem"
    with pytest.raises(ConfigurationError, match="tls_client_optional needs tls_client_ca_file"):
        validate(Settings(**tls, tls_client_optional=True))
    with pytest.raises(ConfigurationError, match="admin_client_roles_file needs tls_client_ca"):
        validate(Settings(**tls, admin_client_roles_file=tmp_path / "r.toml"))
    with pytest.raises(ConfigurationError, match="certificate_only needs admin_client_roles"):
        validate(Settings(**tls, tls_client_ca_file=ca, admin_client_certificate_only=True))
    validate(Settings(**tls, tls_client_ca_file=ca, admin_client_roles_file=tmp_path / "r"))


def test_optional_client_certificates_are_asked_for_not_required(tmp_path: Path) -> None:
    for name in ("c.pem", "k.pem", "ca.pem"):
        (tmp_path / name).write_text("x")
    files = {
        "tls_cert_file": tmp_path / "c.pem",
        "tls_key_file": tmp_path / "k.pem",
        "tls_client_ca_file": tmp_path / "ca.pem",
    }
    assert tls_options(Settings(**files))["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    optional = tls_options(Settings(**files, tls_client_optional=True))
    assert optional["ssl_cert_reqs"] == ssl.CERT_OPTIONAL


def test_no_roles_file_maps_nothing() -> None:
    assert ClientRoles.from_settings(Settings()) == ClientRoles({}, False)
