"""configfs-tsm reading against a stand-in for the kernel (no confidential VM needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from keybroker_guest.configfs import ConfigfsError, TsmFilesystem, read_report
from keybroker_guest.evidence import BindingInput, HardwareTsm


class FakeKernel(TsmFilesystem):
    """Holds entries in memory: writing inblob produces outblob and bumps generation."""

    def __init__(self, extra_writes: int = 0, provider: bytes | None = b"sev_guest\n") -> None:
        self.files: dict[Path, bytes] = {}
        self.extra_writes = extra_writes
        self.provider = provider
        self.removed: list[Path] = []

    def mkdir(self, entry: Path) -> None:
        self.files[entry / "generation"] = b"0\n"
        if self.provider is not None:  # None: no provider attribute to read
            self.files[entry / "provider"] = self.provider

    def write(self, path: Path, data: bytes) -> None:
        self.files[path] = data
        if path.name == "inblob":
            self.files[path.parent / "outblob"] = b"REPORT" + data
            self.files[path.parent / "generation"] = f"{1 + self.extra_writes}\n".encode()

    def read(self, path: Path) -> bytes | None:
        return self.files.get(path)

    def rmdir(self, entry: Path) -> None:
        self.removed.append(entry)


def test_reads_the_report_for_our_report_data(tmp_path: Path) -> None:
    kernel = FakeKernel()
    out, aux, provider = read_report(b"\x07" * 64, tmp_path, kernel)
    assert out == b"REPORT" + b"\x07" * 64
    assert aux is None
    assert provider == "sev_guest"
    assert len(kernel.removed) == 1  # the entry is removed afterwards


def test_a_racing_writer_is_detected(tmp_path: Path) -> None:
    kernel = FakeKernel(extra_writes=1)
    with pytest.raises(ConfigfsError, match="generation went from 0 to 2"):
        read_report(b"\x07" * 64, tmp_path, kernel)
    assert len(kernel.removed) == 1


def test_report_data_must_be_64_bytes(tmp_path: Path) -> None:
    with pytest.raises(ConfigfsError, match="64 bytes"):
        read_report(b"short", tmp_path, FakeKernel())


def test_missing_configfs_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigfsError, match="not a confidential guest"):
        read_report(b"\x00" * 64, tmp_path / "absent", FakeKernel())


# --- HardwareTsm: the guest's evidence source on a real SNP or TDX guest ---------------------

BINDING = BindingInput(report_data=b"\x07" * 64, nonce=b"", public_key_der=b"")


@pytest.mark.parametrize(
    ("tee", "provider"), [("snp", b"sev_guest\n"), ("tdx", b"tdx_guest\n"), ("snp", None)]
)
def test_hardware_tsm_returns_the_report_of_its_provider(
    tmp_path: Path, tee: str, provider: bytes | None
) -> None:
    kernel = FakeKernel(provider=provider)
    assert HardwareTsm(tee, tmp_path, kernel).produce(BINDING) == (b"REPORT" + b"\x07" * 64, {})


@pytest.mark.parametrize(
    ("tee", "provider", "message"),
    [
        ("snp", b"tdx_guest\n", "configfs-tsm provider is tdx_guest, not sev_guest"),
        ("tdx", b"sev_guest\n", "configfs-tsm provider is sev_guest, not tdx_guest"),
        ("tdx", b"arm_cca_guest\n", "configfs-tsm provider is arm_cca_guest, not tdx_guest"),
    ],
)
def test_hardware_tsm_refuses_another_provider(
    tmp_path: Path, tee: str, provider: bytes, message: str
) -> None:
    kernel = FakeKernel(provider=provider)
    with pytest.raises(ConfigfsError) as caught:
        HardwareTsm(tee, tmp_path, kernel).produce(BINDING)
    assert str(caught.value) == message
    assert len(kernel.removed) == 1
