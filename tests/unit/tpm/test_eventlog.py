"""The TCG crypto-agile log: the real GCE log (and the CCEL logs, which share the format)
parse, write back byte for byte and replay to the quoted PCRs of every bank; the boot facts
come only from events whose data hashes to their digest."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.errors import EventLogMismatch, MalformedEvidence
from broker.evidence.tpm.abi import Alg
from broker.evidence.tpm.boot import boot_facts
from broker.evidence.tpm.eventlog import (
    EV_NO_ACTION,
    MAX_EVENTS,
    STARTUP_LOCALITY_SIGNATURE,
    Event,
    EventLog,
    SpecId,
    describe,
    initial_value,
    parse_spec_id,
    parse_tcg_event_log,
)
from broker.simulate.tpm import (
    efi_app_event,
    event_log,
    grub_cmdline_event,
    secure_boot_event,
)

from .vectors import BANKS, pcrs
from .vectors import event_log as gce_log

VECTORS = Path(__file__).parents[2] / "vectors"
CCEL_LOGS = (
    VECTORS / "tdx" / "go-tdx-guest-gcp-ccel" / "ccel_data.dat",
    VECTORS / "tdx" / "trustee-tdx-v4-debug" / "CCEL_data",
)


def test_the_gce_log_round_trips() -> None:
    data = gce_log()
    log = parse_tcg_event_log(data)
    assert log.to_bytes() == data
    assert log.spec.algorithms == ((Alg.SHA1, 20), (Alg.SHA256, 32), (Alg.SHA384, 48))
    assert len(log.entries) == 44
    assert log.startup_locality() is None


@pytest.mark.parametrize("bank", ["sha1", "sha256", "sha384"])
def test_the_gce_log_replays_to_the_quoted_pcr0_to_9(bank: str) -> None:
    replayed = parse_tcg_event_log(gce_log()).replay(BANKS[bank])
    quoted = pcrs(bank)
    assert sorted(replayed) == list(range(10))
    assert all(replayed[pcr] == quoted[pcr] for pcr in range(10))


@pytest.mark.parametrize("path", CCEL_LOGS, ids=lambda p: p.parent.name)
def test_ccel_logs_round_trip_with_their_fill(path: Path) -> None:
    data = path.read_bytes()
    log = parse_tcg_event_log(data)
    assert log.to_bytes() == data
    assert log.fill
    assert set(log.fill) <= {0x00, 0xFF}


def test_a_startup_locality_event_starts_pcr0_at_the_locality() -> None:
    locality = Event(
        0, EV_NO_ACTION, ((Alg.SHA256, bytes(32)),), STARTUP_LOCALITY_SIGNATURE + b"\x03"
    )
    measured = Event(0, 8, ((Alg.SHA256, b"\x11" * 32),), b"crtm")
    log = EventLog(SpecId(0, (0, 2, 0), 2, ((Alg.SHA256, 32),)), (locality, measured))
    start = bytes(31) + b"\x03"
    assert initial_value(0, 32, 3) == start
    assert log.startup_locality() == 3
    assert log.replay(Alg.SHA256) == {0: hashlib.sha256(start + b"\x11" * 32).digest()}
    assert parse_tcg_event_log(log.to_bytes()) == log


def test_synthetic_logs_replay_in_every_bank() -> None:
    data, values = event_log([secure_boot_event(True), efi_app_event(b"shim")])
    log = parse_tcg_event_log(data)
    for bank in (Alg.SHA1, Alg.SHA256, Alg.SHA384):
        replayed = log.replay(bank)
        assert replayed == {pcr: values[bank][pcr] for pcr in (4, 7)}


@settings(max_examples=50, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.integers(0, 23), st.integers(0, 2**32 - 1), st.binary(max_size=40)),
        max_size=8,
    )
)
def test_any_log_round_trips(events: list[tuple[int, int, bytes]]) -> None:
    data, _ = event_log([(pcr, kind, payload, None) for pcr, kind, payload in events])
    assert parse_tcg_event_log(data).to_bytes() == data


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (
            b"\x00" * 4 + (4).to_bytes(4, "little") + bytes(40),
            "event log: first entry is not EV_NO_ACTION (Spec ID event)",
        ),
        (
            b"\x00" * 4
            + (3).to_bytes(4, "little")
            + bytes(20)
            + (24).to_bytes(4, "little")
            + b"Spec ID Event02\x00"
            + bytes(8),
            "event log: Spec ID event signature is not 'Spec ID Event03'",
        ),
    ],
)
def test_a_log_without_its_spec_id_event_is_malformed(data: bytes, detail: str) -> None:
    with pytest.raises(MalformedEvidence) as refused:
        parse_tcg_event_log(data)
    assert refused.value.detail == detail


def test_vendor_info_is_read_and_nothing_may_follow_it() -> None:
    spec = SpecId(0, (0, 2, 0), 2, ((Alg.SHA256, 32),), b"vendor")
    assert parse_spec_id(spec.to_bytes()) == spec
    with pytest.raises(MalformedEvidence, match="1 unexpected bytes after vendorInfo"):
        parse_spec_id(spec.to_bytes() + b"\x00")


def test_an_algorithm_listed_twice_is_malformed() -> None:
    spec = SpecId(0, (0, 2, 0), 2, ((Alg.SHA256, 32), (Alg.SHA256, 32)))
    with pytest.raises(MalformedEvidence, match="lists an algorithm twice"):
        parse_spec_id(spec.to_bytes())


def test_an_event_naming_a_digest_twice_is_malformed() -> None:
    spec = SpecId(0, (0, 2, 0), 2, ((Alg.SHA256, 32), (Alg.SHA384, 48)))
    twice = Event(0, 8, ((Alg.SHA256, bytes(32)), (Alg.SHA256, bytes(32))), b"x")
    with pytest.raises(MalformedEvidence) as refused:
        parse_tcg_event_log(EventLog(spec, (twice,)).to_bytes())
    assert refused.value.detail == "event log: event 1 repeats digest algorithm 0x000b"


def test_more_than_max_events_is_malformed_and_says_why() -> None:
    one = Event(0, 8, ((Alg.SHA256, bytes(32)),), b"")
    spec = SpecId(0, (0, 2, 0), 2, ((Alg.SHA256, 32),))
    assert len(EventLog(spec, (one,) * MAX_EVENTS).entries) == MAX_EVENTS
    data = EventLog(spec, (one,) * (MAX_EVENTS + 1)).to_bytes()
    with pytest.raises(MalformedEvidence) as refused:
        parse_tcg_event_log(data, bound="no more than firmware logs")
    offset = len(EventLog(spec, (one,) * MAX_EVENTS).to_bytes())
    assert refused.value.detail == (
        f"event log: more than {MAX_EVENTS} events after the Spec ID event (at offset "
        f"{offset}); no more than firmware logs"
    )


def test_descriptions_name_variables_and_printable_data() -> None:
    log = parse_tcg_event_log(gce_log())
    described = [describe(e.event_type, e.data) for e in log.entries[:8]]
    assert described[0] is None  # UTF-16 firmware version: not ASCII
    assert described[1] == "GCE NonHostInfo"
    assert described[2:7] == ["SecureBoot", "PK", "KEK", "db", "dbx"]


# --- boot facts -------------------------------------------------------------------------------


def test_the_gce_boot_facts() -> None:
    facts = boot_facts(parse_tcg_event_log(gce_log()), Alg.SHA256)
    assert facts.secure_boot is True
    assert [d.hex()[:16] for d in facts.efi_apps] == [
        "dba8d69ffb244496",
        "f7bad83f87940312",
        "6f6afb3caed004e7",
    ]
    assert facts.kernel_cmdline is not None
    assert facts.kernel_cmdline.startswith("/syslinux/vmlinuz.A init=/usr/lib/systemd/systemd")
    assert "dm_verity.error_behavior=3" in facts.kernel_cmdline


def test_synthetic_boot_facts() -> None:
    data, _ = event_log(
        [
            secure_boot_event(False),
            efi_app_event(b"shim"),
            efi_app_event(b"kernel"),
            grub_cmdline_event("first"),
            grub_cmdline_event("root=/dev/vda1 ro"),
        ]
    )
    facts = boot_facts(parse_tcg_event_log(data), Alg.SHA256)
    assert facts.claim() == {
        "secure_boot": False,
        "efi_apps": [hashlib.sha256(b"shim").hexdigest(), hashlib.sha256(b"kernel").hexdigest()],
        "kernel_cmdline": "root=/dev/vda1 ro",
    }


def test_no_secure_boot_variable_and_no_grub_leave_the_facts_null() -> None:
    data, _ = event_log([efi_app_event(b"systemd-boot")])
    facts = boot_facts(parse_tcg_event_log(data), Alg.SHA256)
    assert (facts.secure_boot, facts.kernel_cmdline) == (None, None)


def _with_data(event: tuple[int, int, bytes, bytes | None], data: bytes) -> bytes:
    """A log whose one event keeps the digest of its original data but carries ``data``."""
    log = parse_tcg_event_log(event_log([event])[0])
    entry = log.entries[0]
    return EventLog(
        log.spec, (Event(entry.index, entry.event_type, entry.digests, data),)
    ).to_bytes()


def test_a_secure_boot_variable_that_does_not_hash_to_its_digest_is_a_mismatch() -> None:
    on = secure_boot_event(True)
    data = _with_data(on, on[2][:-1] + b"\x00")  # claims "off", digest of "on"
    with pytest.raises(EventLogMismatch) as refused:
        boot_facts(parse_tcg_event_log(data), Alg.SHA256)
    digest = hashlib.sha256(on[2]).hexdigest()
    found = hashlib.sha256(on[2][:-1] + b"\x00").hexdigest()
    assert refused.value.detail == (
        "event log: event 1 (EV_EFI_VARIABLE_DRIVER_CONFIG, SecureBoot) data hashes to "
        f"sha256 {found} != its digest {digest}"
    )


def test_a_kernel_command_line_that_does_not_hash_to_its_digest_is_a_mismatch() -> None:
    event = grub_cmdline_event("console=ttyS0")
    data = _with_data(event, b"kernel_cmdline: init=/bin/sh\x00")
    with pytest.raises(EventLogMismatch, match=r"event 1 \(EV_IPL, GRUB kernel_cmdline\) data"):
        boot_facts(parse_tcg_event_log(data), Alg.SHA256)


def test_two_secure_boot_states_are_a_mismatch() -> None:
    data, _ = event_log([secure_boot_event(True), secure_boot_event(False)])
    with pytest.raises(EventLogMismatch) as refused:
        boot_facts(parse_tcg_event_log(data), Alg.SHA256)
    assert refused.value.detail == (
        "event log: event 2 measures SecureBoot off after an earlier event measured it on"
    )


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00" * 16, "holds 16 bytes, less than a UEFI_VARIABLE_DATA header"),
        (secure_boot_event(True)[2] + b"\x00", "lengths .* do not add up to its 54 bytes"),
    ],
)
def test_a_malformed_variable_event_is_malformed(data: bytes, match: str) -> None:
    log, _ = event_log([(7, 0x80000001, data, None)])
    with pytest.raises(MalformedEvidence, match=match):
        boot_facts(parse_tcg_event_log(log), Alg.SHA256)


def test_a_secure_boot_value_other_than_0_or_1_is_malformed() -> None:
    value = secure_boot_event(True)[2][:-1] + b"\x02"
    log, _ = event_log([(7, 0x80000001, value, None)])
    with pytest.raises(MalformedEvidence, match="measures SecureBoot = 02, not 0 or 1"):
        boot_facts(parse_tcg_event_log(log), Alg.SHA256)
