"""``keybroker serve --tls-cert --tls-key [--tls-client-ca]`` and ``dev run --demo-tls``: the
options uvicorn gets, and the combinations refused before anything starts."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography import x509

from broker.cli import UsageError, build_parser
from broker.cli.serve import TLS12_CIPHERS, _with_listen, tls_options
from broker.localstate.democa import demo_tls
from broker.settings import Settings


def listen(argv: list[str], state: Path) -> Settings:
    args = build_parser().parse_args(argv)
    return _with_listen(Settings(state_dir=state), args)


def test_plain_http_has_no_tls_options(tmp_path: Path) -> None:
    assert tls_options(listen(["serve"], tmp_path)) == {}


def test_a_certificate_and_key_serve_https_with_aead_suites_only(tmp_path: Path) -> None:
    tls = demo_tls(tmp_path)
    argv = ["serve", "--tls-cert", str(tls.cert_file), "--tls-key", str(tls.key_file)]
    assert tls_options(listen(argv, tmp_path)) == {
        "ssl_certfile": str(tls.cert_file),
        "ssl_keyfile": str(tls.key_file),
        "ssl_ciphers": TLS12_CIPHERS,
    }
    argv += ["--tls-client-ca", str(tls.ca_file)]
    options = tls_options(listen(argv, tmp_path))
    assert (options["ssl_ca_certs"], options["ssl_cert_reqs"]) == (
        str(tls.ca_file),
        ssl.CERT_REQUIRED,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers(TLS12_CIPHERS)
    tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12
    assert all("GCM" in name or "CHACHA20" in name for name in tls12), tls12
    assert all(name.startswith("ECDHE-") for name in tls12), tls12


def test_demo_tls_makes_a_ca_and_a_certificate_for_loopback(tmp_path: Path) -> None:
    settings = listen(["dev", "run", "--demo", "--demo-tls"], tmp_path)
    tls = demo_tls(tmp_path)
    assert (settings.tls_cert_file, settings.tls_key_file) == (tls.cert_file, tls.key_file)
    assert tls.key_file.stat().st_mode & 0o777 == 0o600
    certificate = x509.load_pem_x509_certificate(tls.cert_file.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert demo_tls(tmp_path).pin_sha256 == tls.pin_sha256  # made once, then reused


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tls-cert", "c.pem"], "tls_cert_file and tls_key_file go together"),
        (["--tls-key", "k.pem"], "tls_cert_file and tls_key_file go together"),
        (["--tls-client-ca", "ca.pem"], "tls_client_ca_file needs tls_cert_file and tls_key_file"),
    ],
)
def test_incomplete_tls_options_are_usage_errors(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    with pytest.raises(UsageError, match=f"^{message}$"):
        listen(["serve", *extra], tmp_path)


def test_missing_tls_files_are_usage_errors(tmp_path: Path) -> None:
    argv = ["serve", "--tls-cert", str(tmp_path / "absent.pem"), "--tls-key", "k.pem"]
    with pytest.raises(UsageError, match="is not a readable file"):
        tls_options(listen(argv, tmp_path))


def test_demo_tls_and_a_certificate_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--demo-tls makes its own certificate"):
        listen(["dev", "run", "--demo-tls", "--tls-cert", "c", "--tls-key", "k"], tmp_path)
