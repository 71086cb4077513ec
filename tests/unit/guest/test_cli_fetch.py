"""``keybroker guest fetch`` exit statuses (docs/cli.md): 0 with the secret written, 1 when
the broker refuses or configfs-tsm fails, 2 for usage errors. The broker is a fake served
through httpx's MockTransport; an unreachable broker is tested in tests/integration."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.cli import build_parser, main
from broker.cli.guest import run_fetch
from broker.guest.configfs import TSM_REPORT_ROOT
from broker.simulate.nitro import FakeNitroAuthority

from .fake_broker import FakeBroker, flip_signature

URL = "http://broker.test"


@pytest.fixture(scope="module")
def nitro_kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("nitro") / "authority"
    FakeNitroAuthority.generate().save(folder)
    return folder


def fetch_args(*extra: str) -> list[str]:
    return ["guest", "fetch", "--url", URL, "--key", "disk-key", *extra]


def run(argv: list[str], broker: FakeBroker) -> int:
    args = build_parser().parse_args(argv)
    return run_fetch(args, transport=broker.transport())


def test_a_released_key_is_written_and_exits_0(
    nitro_kit: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "secret.bin"
    argv = fetch_args("--tee", "nitro", "--simulate", "--kit", str(nitro_kit), "--out", str(out))
    assert run(argv, FakeBroker()) == 0
    assert out.read_bytes() == b"the disk key"
    assert capsys.readouterr().err == "released disk-key version 1 (12 bytes)\n"


@pytest.mark.parametrize(
    "refusal",
    [
        ("/v1/attest", 403, "evidence refused: chain-invalid"),
        ("/v1/keys/disk-key/release", 403, "policy denied: pcrs.0 hex == 00…, found 4a…"),
        ("/v1/keys/disk-key/release", 404, "no key named disk-key"),
    ],
)
def test_a_refusal_exits_1_with_the_problem_detail(
    nitro_kit: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    refusal: tuple[str, int, str],
) -> None:
    path, status, detail = refusal
    out = tmp_path / "secret.bin"
    argv = fetch_args("--tee", "nitro", "--simulate", "--kit", str(nitro_kit), "--out", str(out))
    assert run(argv, FakeBroker(refuse={path: (status, detail)})) == 1
    assert capsys.readouterr() == ("", f"keybroker guest: {path}: {status} {detail}\n")
    assert not out.exists()


def test_a_spoiled_envelope_exits_1(nitro_kit: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broker = FakeBroker(spoil=flip_signature)
    argv = fetch_args("--tee", "nitro", "--simulate", "--kit", str(nitro_kit))
    assert run(argv, broker) == 1
    assert capsys.readouterr() == (
        "",
        "keybroker guest: release envelope signature does not verify: "
        "token signature does not verify\n",
    )


@pytest.mark.skipif(TSM_REPORT_ROOT.is_dir(), reason="this machine has configfs-tsm")
@pytest.mark.parametrize("tee", ["snp", "tdx"])
def test_no_configfs_tsm_exits_1(tee: str, capsys: pytest.CaptureFixture[str]) -> None:
    broker = FakeBroker()
    assert run(fetch_args("--tee", tee), broker) == 1
    assert capsys.readouterr() == (
        "",
        f"keybroker guest: {TSM_REPORT_ROOT} does not exist: not a confidential guest, "
        "or no configfs-tsm\n",
    )
    assert broker.paths == ["/v1/challenge"]  # nothing is attested without a report


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--tee", "sgx"],
            "--tee sgx needs --simulate (configfs-tsm serves snp, tdx; the vTPM serves "
            "snp-vtpm, tpm)",
        ),
        (
            ["--tee", "nitro"],
            "--tee nitro needs --simulate (configfs-tsm serves snp, tdx; the vTPM serves "
            "snp-vtpm, tpm)",
        ),
        (
            ["--tee", "tdx-vtpm"],
            "--tee tdx-vtpm needs --simulate (configfs-tsm serves snp, tdx; the vTPM serves "
            "snp-vtpm, tpm)",
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
    ],
)
def test_usage_errors_exit_2(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # no transport: a usage error is found before any request is made
    assert main(fetch_args(*extra)) == 2
    assert capsys.readouterr() == ("", f"keybroker: {message}\n")


def test_an_unknown_tee_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(fetch_args("--tee", "sev"))
    assert caught.value.code == 2
    assert "argument --tee: invalid choice: 'sev'" in capsys.readouterr().err
