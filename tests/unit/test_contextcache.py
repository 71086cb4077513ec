"""The per-worker release-context cache: LRU bound, capacity 0, conditional discard; and the
conditional append deriving the context exactly as ``release_context`` does."""

from __future__ import annotations

import pytest

from broker.release.contextcache import ContextCache
from broker.store.contexts import BoundPolicy, ReleaseContext
from broker.store.sqlfiles import QUERIES


def _context(name: str, version: int = 1, state: str = "active") -> ReleaseContext:
    return ReleaseContext(
        name, version, state, "keybroker-kek-v1", b"\x01" * 40, 32, BoundPolicy("p", 1, "ab" * 32)
    )


def test_the_least_recently_used_entry_leaves_first() -> None:
    cache = ContextCache(3)
    for name in ("a", "b", "c"):
        cache.put(_context(name))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put(_context("d"))
    assert len(cache) == 3
    assert cache.get("b") is None
    assert [name for name in "acd" if cache.get(name) is not None] == ["a", "c", "d"]
    for number in range(100):
        cache.put(_context(f"k{number}"))
    assert len(cache) == 3
    assert [cache.get(f"k{n}") is not None for n in (96, 97, 98, 99)] == [False, True, True, True]


def test_putting_a_key_again_replaces_its_entry_without_growing() -> None:
    cache = ContextCache(2)
    cache.put(_context("a", 1))
    cache.put(_context("b"))
    newer = _context("a", 2)
    cache.put(newer)
    assert len(cache) == 2
    assert cache.get("a") is newer
    cache.put(_context("c"))  # b was the least recently used
    assert cache.get("b") is None
    assert cache.get("a") is newer


def test_capacity_zero_remembers_nothing() -> None:
    cache = ContextCache(0)
    cache.put(_context("a"))
    assert (cache.capacity, len(cache), cache.get("a")) == (0, 0, None)


def test_negative_capacity_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        ContextCache(-1)


def test_discard_forgets_only_the_entry_it_names() -> None:
    cache = ContextCache(4)
    stale = _context("a", 1)
    cache.put(stale)
    fresher = _context("a", 2)
    cache.put(fresher)  # a concurrent release read the key again meanwhile
    cache.discard(stale)
    assert cache.get("a") is fresher
    cache.discard(fresher)
    assert cache.get("a") is None
    cache.discard(fresher)  # already gone: nothing happens
    assert len(cache) == 0


def test_context_arguments_name_every_field_and_null_policy_fields() -> None:
    context = _context("a")
    assert context.arguments() == (
        "a",
        1,
        "active",
        "keybroker-kek-v1",
        b"\x01" * 40,
        32,
        "p",
        1,
        "ab" * 32,
        "hsm-only",
    )
    unbound = ReleaseContext("a", 1, "active", "keybroker-kek-v1", b"\x01" * 40, 32, None)
    assert unbound.arguments()[6:] == (None, None, None, "hsm-only")


def _derivation(sql: str) -> str:
    """The FROM clause that derives a key's context, whitespace-normalised."""
    start = sql.index("FROM (SELECT * FROM keys")
    end = sql.index(") p ON true", start) + len(") p ON true")
    return " ".join(sql[start:end].split())


@pytest.mark.parametrize(
    "name",
    ["audit_release_if_current", "consume_challenge_and_audit_release_if_current"],
)
def test_the_conditional_append_derives_the_context_as_release_context_does(name: str) -> None:
    named = QUERIES
    assert _derivation(named[name]) == _derivation(named["release_context"])
    # Every field of the context is compared, and the policy's with IS NOT DISTINCT FROM.
    conditional = " ".join(named[name].split())
    for number, column in enumerate(
        ("version", "state", "kek_label", "wrapped_blob", "secret_length"), start=2
    ):
        # A destroyed key's blob is null; release_context reads it as empty bytes.
        compared = (
            "coalesce(k.wrapped_blob, ''::bytea)" if column == "wrapped_blob" else f"k.{column}"
        )
        assert f"{compared} = ${number}" in conditional
    assert "coalesce(k.wrapped_blob, ''::bytea) AS wrapped_blob" in named["release_context"]
    for number, column in enumerate(("name", "version", "digest"), start=7):
        assert f"p.{column} IS NOT DISTINCT FROM ${number}" in conditional
    assert "k.exposure = $10" in conditional
