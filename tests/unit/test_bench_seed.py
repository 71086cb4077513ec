"""Per-key secrets of the benchmark's scale run (broker/bench/seed.py)."""

from __future__ import annotations

import hashlib
import hmac

from broker.bench.seed import key_index, key_name, key_secret

BENCH = bytes(range(32))


def test_the_first_key_holds_the_benchmark_secret_itself() -> None:
    assert key_secret(BENCH, 0) == BENCH


def test_other_keys_hold_an_hmac_of_their_name() -> None:
    expected = hmac.new(BENCH, b"bench-000007", hashlib.sha256).digest()
    assert key_secret(BENCH, 7) == expected
    assert len({key_secret(BENCH, i) for i in range(1000)}) == 1000


def test_a_key_name_gives_back_its_index() -> None:
    assert [key_index(key_name(i)) for i in (0, 1, 99_999)] == [0, 1, 99_999]
