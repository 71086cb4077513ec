"""The bounded memory every cache is made of."""

from __future__ import annotations

import pytest

from broker.lru import Lru, memoized


def test_the_least_recently_used_goes_first() -> None:
    memory: Lru[str, int] = Lru(2)
    memory.put("a", 1)
    memory.put("b", 2)
    assert memory.get("a") == 1  # a is now the most recently used
    memory.put("c", 3)
    assert memory.keys() == ["a", "c"]
    assert memory.get("b") is None


def test_putting_again_refreshes_and_replaces() -> None:
    memory: Lru[str, int] = Lru(2)
    memory.put("a", 1)
    memory.put("b", 2)
    memory.put("a", 10)
    memory.put("c", 3)
    assert memory.keys() == ["a", "c"]
    assert memory.get("a") == 10


def test_falsy_values_are_values() -> None:
    memory: Lru[str, bytes] = Lru(4)
    memory.put("empty", b"")
    assert memory.get("empty") == b""
    memory.put("other", b"x")
    memory.get("empty")
    assert memory.keys() == ["other", "empty"]


def test_capacity_zero_holds_nothing() -> None:
    memory: Lru[str, int] = Lru(0)
    memory.put("a", 1)
    assert (memory.get("a"), len(memory)) == (None, 0)


def test_pop_and_clear() -> None:
    memory: Lru[str, int] = Lru(3)
    memory.put("a", 1)
    memory.put("b", 2)
    assert (memory.pop("a"), memory.pop("a")) == (1, None)
    memory.clear()
    assert len(memory) == 0


def test_a_negative_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity -1 is negative"):
        Lru(-1)


def test_discard_forgets_only_the_value_it_names() -> None:
    memory: Lru[str, list[int]] = Lru(2)
    stale, fresh = [1], [1]  # equal, but not the same value
    memory.put("k", stale)
    memory.put("k", fresh)
    memory.discard("k", stale)
    assert memory.get("k") is fresh
    memory.discard("k", fresh)
    assert memory.get("k") is None


def test_a_memoized_function_computes_each_argument_once() -> None:
    calls: list[str] = []

    @memoized(2)
    def shout(text: str) -> str:
        calls.append(text)
        return text.upper()

    assert [shout("a"), shout("a"), shout("b"), shout("c"), shout("a")] == list("AABCA")
    assert calls == ["a", "b", "c", "a"]  # "a" went first when "c" came
    assert len(shout) == 2
    shout.clear()
    assert (len(shout), shout("b"), calls[-1]) == (0, "B", "b")


def test_a_memoized_function_remembers_no_failure() -> None:
    calls: list[int] = []

    @memoized(4)
    def half(number: int) -> int:
        calls.append(number)
        if number % 2:
            raise ValueError(f"{number} is odd")
        return number // 2

    for _ in range(2):
        with pytest.raises(ValueError, match="3 is odd"):
            half(3)
    assert (half(4), half(4), calls) == (2, 2, [3, 3, 4])
