"""``keybroker bench`` exit statuses without a run: usage errors exit 2 before anything is
brought up, and a finished run exits 1 when any request failed."""

from __future__ import annotations

from argparse import Namespace

import pytest

from broker.cli import main
from broker.cli.bench import check_numbers, exit_status


@pytest.mark.parametrize(
    ("levels", "message"),
    [
        ("1,x", "not a list of integers: 1,x"),
        ("1.5", "not a list of integers: 1.5"),
        ("0,16", "concurrency levels must be positive integers"),
        ("-4", "concurrency levels must be positive integers"),
        (",", "concurrency levels must be positive integers"),
    ],
)
def test_bad_levels_exit_2(levels: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["bench", f"--levels={levels}"])
    assert caught.value.code == 2
    assert capsys.readouterr().err.endswith(
        f"keybroker bench: error: argument --levels: {message}\n"
    )


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--concurrency", "0", "--concurrency must be positive, found 0"),
        ("--duration", "0", "--duration must be positive, found 0.0"),
        ("--duration", "-1.5", "--duration must be positive, found -1.5"),
        ("--floor-seconds", "0", "--floor-seconds must be positive, found 0.0"),
        ("--check-every", "0", "--check-every must be positive, found 0"),
        ("--key-pool", "-1", "--key-pool must be positive, found -1"),
        ("--generators", "0", "--generators must be positive, found 0"),
        ("--keys", "0", "--keys must be positive, found 0"),
        ("--warmup", "-0.5", "--warmup must not be negative, found -0.5"),
        ("--workers", "-1", "--workers must not be negative, found -1"),
        ("--hsm-threads", "-2", "--hsm-threads must not be negative, found -2"),
        ("--audit-records", "-1", "--audit-records must not be negative, found -1"),
        ("--platforms", "0", "--platforms must be positive, found 0"),
        ("--replicas", "0", "--replicas must be positive, found 0"),
    ],
)
def test_numbers_out_of_range_exit_2(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", f"{option}={value}"]) == 2
    assert capsys.readouterr() == ("", f"keybroker: {message}\n")


def test_zero_warmup_workers_threads_and_audit_records_are_accepted() -> None:
    args = Namespace(
        concurrency=1,
        duration=0.1,
        floor_seconds=0.1,
        check_every=1,
        key_pool=1,
        generators=1,
        keys=1,
        warmup=0.0,
        workers=0,
        hsm_threads=0,
        audit_records=0,
        platforms=1,
        replicas=1,
        scenario="snp",
    )
    check_numbers(args)  # raises nothing


@pytest.mark.parametrize("scenario", ["tdx", "sgx", "nitro"])
def test_a_fleet_is_refused_where_the_scenario_simulates_one_platform(
    scenario: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "--scenario", scenario, "--platforms", "2"]) == 2
    assert capsys.readouterr() == (
        "",
        f"keybroker: --platforms: scenario {scenario} simulates at most 1, found 2\n",
    )


def test_a_flow_other_than_the_two_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["bench", "--flow", "three-requests"])
    assert caught.value.code == 2
    assert "argument --flow: invalid choice: 'three-requests'" in capsys.readouterr().err


@pytest.mark.parametrize(("errors", "status"), [(0, 0), (1, 1), (250, 1)])
def test_any_error_in_any_run_exits_1(errors: int, status: int) -> None:
    assert exit_status({"errors": errors, "releases_per_s": 900.0}) == status
