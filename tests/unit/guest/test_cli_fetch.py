"""``keybroker guest fetch`` (the lean client's ``keybroker-guest fetch``): one exit status per
failure (docs/boot.md, "Exit statuses"), the key written only when everything checked out.
The broker is a fake behind the lean client's transport; a real broker, TLS and an
unreachable port are tested in tests/integration/test_guest_tls.py."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
from keybroker_guest.configfs import TSM_REPORT_ROOT
from keybroker_guest.errors import ExitStatus

from broker.cli import build_parser, main
from broker.cli.guest import run_fetch
from broker.simulate.nitro import FakeNitroAuthority

from .fake_broker import FakeBroker, LeanTransport, flip_signature

URL = "http://127.0.0.1:18401"  # loopback: the channel itself is the machine's own


@pytest.fixture(scope="module")
def nitro_kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nitro") / "authority"
    FakeNitroAuthority.generate().save(folder)
    return folder


def fetch_args(*extra: str, url: str = URL) -> list[str]:
    return ["guest", "fetch", "--url", url, "--key", "disk-key", "--wait", "0", *extra]


def simulated(kit: Path, *extra: str) -> list[str]:
    return fetch_args("--tee", "nitro", "--simulate", "--kit", str(kit), *extra)


def run(argv: list[str], broker: FakeBroker | LeanTransport) -> int:
    args = build_parser().parse_args(argv)
    transport = broker.lean() if isinstance(broker, FakeBroker) else broker
    return run_fetch(args, transport=transport)


def test_a_released_key_is_written_0600_and_exits_0(
    nitro_kit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "secret.bin"
    assert run(simulated(nitro_kit, "--out", str(out)), FakeBroker()) == ExitStatus.OK == 0
    assert out.read_bytes() == b"the disk key"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret.bin"]  # no partial file left
    assert capsys.readouterr() == ("", "released disk-key version 1 (12 bytes)\n")


def test_the_key_goes_to_stdout_without_out(
    nitro_kit: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert run(simulated(nitro_kit), FakeBroker()) == 0
    assert capsysbinary.readouterr().out == b"the disk key"


@pytest.mark.parametrize(
    ("flow", "paths"),
    [
        ([], ["/v1/jwks", "/v1/challenge", "/v1/keys/disk-key/release"]),
        (["--flow", "one-request"], ["/v1/jwks", "/v1/challenge", "/v1/keys/disk-key/release"]),
        (
            ["--flow", "token"],
            ["/v1/jwks", "/v1/challenge", "/v1/attest", "/v1/keys/disk-key/release"],
        ),
    ],
)
def test_the_one_request_flow_is_the_default_and_the_token_flow_an_option(
    nitro_kit: Path, flow: list[str], paths: list[str]
) -> None:
    broker = FakeBroker()
    assert run(simulated(nitro_kit, *flow), broker) == 0
    assert broker.paths == paths


RELEASE = "/v1/keys/disk-key/release"
TOKEN_FLOW = ("--flow", "token")


@pytest.mark.parametrize(
    "refusal",
    [
        # One request: the evidence is refused at the release.
        (RELEASE, (), 403, "evidence refused: chain-invalid", ExitStatus.DENIED),
        ("/v1/attest", TOKEN_FLOW, 403, "evidence refused: chain-invalid", ExitStatus.DENIED),
        (RELEASE, (), 403, "policy denied: pcrs.0", ExitStatus.DENIED),
        (RELEASE, TOKEN_FLOW, 404, "no key named disk-key", ExitStatus.DENIED),
        (RELEASE, (), 422, "evidence invalid: report signature", ExitStatus.EVIDENCE),
        ("/v1/attest", TOKEN_FLOW, 422, "evidence invalid: report signature", ExitStatus.EVIDENCE),
        ("/v1/challenge", (), 503, "database unavailable", ExitStatus.UNREACHABLE),
        ("/v1/challenge", (), 429, "too many challenges", ExitStatus.UNREACHABLE),
    ],
)
def test_each_refusal_has_its_exit_status_and_writes_nothing(
    nitro_kit: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    refusal: tuple[str, tuple[str, ...], int, str, ExitStatus],
) -> None:
    path, flow, status, detail, exit_status = refusal
    out = tmp_path / "secret.bin"
    broker = FakeBroker(refuse={path: (status, detail)})
    assert run(simulated(nitro_kit, "--out", str(out), *flow), broker) == exit_status
    assert capsys.readouterr() == ("", f"keybroker guest: {path}: {status} {detail}\n")
    assert not out.exists()
    assert broker.paths[-1] == path


def test_a_substituted_envelope_exits_6(
    nitro_kit: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert run(simulated(nitro_kit), FakeBroker(spoil=flip_signature)) == ExitStatus.UNTRUSTED
    assert capsysbinary.readouterr() == (
        b"",
        b"keybroker guest: envelope signature does not verify with the pinned broker key\n",
    )


def test_a_broker_signing_with_another_key_than_the_pinned_one_gets_no_evidence(
    nitro_kit: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = FakeBroker()
    pin = FakeBroker().thumbprint
    assert run(simulated(nitro_kit, f"--broker-key-sha256={pin}"), broker) == 6
    assert capsys.readouterr() == (
        "",
        f"keybroker guest: the broker signs with {broker.thumbprint}, not the pinned key {pin}\n",
    )
    assert broker.paths == ["/v1/jwks"]  # refused before any challenge or evidence


def test_plain_http_to_another_host_needs_the_broker_key_pinned(
    nitro_kit: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = FakeBroker()
    argv = simulated(nitro_kit)
    argv[argv.index(URL)] = "http://broker.test"
    assert run(argv, broker) == ExitStatus.USAGE
    assert capsys.readouterr().err == (
        "keybroker guest: over plain HTTP to another host nothing authenticates the broker: "
        "use https (--ca or --pin-sha256) or pin its signing key (--broker-key-sha256)\n"
    )
    assert broker.paths == []
    assert run([*argv, f"--broker-key-sha256={broker.thumbprint}"], broker) == 0


def test_an_unreachable_broker_exits_3(nitro_kit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broker = FakeBroker()
    assert run(simulated(nitro_kit), LeanTransport(broker, unreachable=1)) == 3
    assert capsys.readouterr() == (
        "",
        "keybroker guest: cannot reach http://broker.test:80: Connection refused "
        "(gave up after 1 attempt)\n",
    )
    assert broker.paths == []


@pytest.mark.skipif(TSM_REPORT_ROOT.is_dir(), reason="this machine has configfs-tsm")
@pytest.mark.parametrize("tee", ["snp", "tdx"])
def test_no_configfs_tsm_exits_5(tee: str, capsys: pytest.CaptureFixture[str]) -> None:
    broker = FakeBroker()
    assert run(fetch_args("--tee", tee), broker) == ExitStatus.EVIDENCE
    assert capsys.readouterr() == (
        "",
        f"keybroker guest: {TSM_REPORT_ROOT} does not exist: not a confidential guest, "
        "or no configfs-tsm\n",
    )
    assert broker.paths == ["/v1/jwks", "/v1/challenge"]  # nothing attested without a report


@pytest.mark.skipif(shutil.which("tpm2_quote") is None, reason="tpm2-tools is not installed")
@pytest.mark.parametrize("tee", ["snp-vtpm", "tpm"])
def test_no_vtpm_exits_5(
    tee: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A vTPM guest whose TPM is absent: the failing tool is named, nothing is attested."""
    monkeypatch.setenv("TPM2TOOLS_TCTI", "device:/nonexistent/tpmrm0")
    broker = FakeBroker()
    assert run(fetch_args("--tee", tee), broker) == ExitStatus.EVIDENCE
    tool = "tpm2_nvread" if tee == "snp-vtpm" else "tpm2_quote"
    assert capsys.readouterr().err.startswith(f"keybroker guest: {tool} failed: ")
    assert broker.paths == ["/v1/jwks", "/v1/challenge"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--tee", "sgx"],
            "--tee sgx needs --simulate (configfs-tsm serves snp, tdx; the vTPM serves "
            "snp-vtpm, tdx-vtpm, tpm)",
        ),
        (
            ["--tee", "nitro"],
            "--tee nitro needs --simulate (configfs-tsm serves snp, tdx; the vTPM serves "
            "snp-vtpm, tdx-vtpm, tpm)",
        ),
        (
            ["--tee", "snp", "--simulate", "--kit", "/nonexistent/kit"],
            "simulation kit /nonexistent/kit does not exist (make run creates the snp kit; "
            "pass --kit DIR for a kit saved with broker.simulate)",
        ),
        (
            ["--tee", "tdx", "--simulate", "--state-dir", "/nonexistent/state"],
            "simulation kit /nonexistent/state/demo/tdx does not exist (make run creates the "
            "snp kit; pass --kit DIR for a kit saved with broker.simulate)",
        ),
        (
            ["--tee", "snp", "--pin-sha256", "A" * 43 + "="],
            "--ca and --pin-sha256 judge TLS: they need an https URL",
        ),
        (
            ["--tee", "snp", "--url", "https://127.0.0.1:18401", "--pin-sha256", "ab" * 32],
            f"pin-sha256 {'ab' * 32!r} is not the standard base64 of a SHA-256 digest "
            "(RFC 7469, 44 characters) (it looks like hex)",
        ),
        (
            ["--tee", "snp", "--url", "ftp://127.0.0.1"],
            "broker URL 'ftp://127.0.0.1' is not http(s)://host[:port][/path]",
        ),
        (["--tee", "snp", "--wait", "-1"], "--wait must be within 0..3600 seconds"),
    ],
)
def test_usage_errors_exit_2_before_any_request(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # no transport given: a request would go to the network, and none is made
    assert main(fetch_args(*extra)) == ExitStatus.USAGE
    assert capsys.readouterr() == ("", f"keybroker guest: {message}\n")


def test_an_unknown_tee_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(fetch_args("--tee", "sev"))
    assert caught.value.code == 2
    assert "argument --tee: invalid choice: 'sev'" in capsys.readouterr().err
