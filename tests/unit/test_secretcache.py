"""The secret cache's bookkeeping with stand-in handles (tests/integration/test_custody.py
drives it against a real token)."""

from __future__ import annotations

import pytest

from hsm.handles import AgedHandles
from hsm.keycopies import KeyCopyLimits
from hsm.secretcache import SecretCache, SecretCacheLimits, SecretCacheStats, cache_key


class Handle:
    def __init__(self) -> None:
        self.destroyed = 0

    def destroy(self) -> None:
        self.destroyed += 1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_key_names_label_and_blob_digest() -> None:
    assert cache_key("keybroker-kek-v1", b"blob") != cache_key("keybroker-kek-v2", b"blob")
    assert cache_key("keybroker-kek-v1", b"blob") != cache_key("keybroker-kek-v1", b"blob2")
    assert cache_key("keybroker-kek-v1", b"blob")[1].hex() == (
        "fa2c8cc4f28176bbeed4b736df569a34c79cd3723e9ec42f9674b4d46ac6b8b8"
    )


@pytest.mark.parametrize(("size", "age"), [(-1, 300.0), (1, 0.0), (1, -5.0)])
def test_limits_refuse_a_negative_size_or_no_age(size: int, age: float) -> None:
    with pytest.raises(ValueError, match="must be >= 0 and max age"):
        SecretCacheLimits(size, age)


def test_a_disabled_limit_makes_no_cache() -> None:
    assert not SecretCacheLimits().enabled
    with pytest.raises(ValueError, match="at least 1"):
        SecretCache(SecretCacheLimits(0))


def test_putting_a_key_again_destroys_the_handle_it_replaces() -> None:
    cache = SecretCache(SecretCacheLimits(2, 10.0, Clock()))
    old, new = Handle(), Handle()
    key = cache_key("keybroker-kek-v1", b"a")
    cache.put(key, old)
    cache.put(key, new)
    assert (old.destroyed, new.destroyed) == (1, 0)
    assert cache.get(key) is new
    assert cache.stats() == SecretCacheStats(entries=1, hits=1, misses=0)


def test_expiry_counts_from_the_unwrap_and_sweeps_everything_due() -> None:
    clock = Clock()
    cache = SecretCache(SecretCacheLimits(8, 10.0, clock))
    handles = {name: Handle() for name in "abc"}
    for name in "ab":
        cache.put(cache_key("k", name.encode()), handles[name])
    clock.now = 5.0
    cache.put(cache_key("k", b"c"), handles["c"])
    clock.now = 9.9
    assert cache.get(cache_key("k", b"a")) is handles["a"]  # used, but not made younger
    clock.now = 10.0
    cache.expire()
    assert [h.destroyed for h in handles.values()] == [1, 1, 0]
    clock.now = 15.0
    assert cache.get(cache_key("k", b"c")) is None
    assert [h.destroyed for h in handles.values()] == [1, 1, 1]
    assert cache.stats() == SecretCacheStats(entries=0, hits=1, misses=1)


@pytest.mark.parametrize("age", [0, -1.0])
def test_a_key_copy_age_must_be_positive(age: float) -> None:
    with pytest.raises(ValueError, match=f"key copy max age {age} s must be > 0"):
        KeyCopyLimits(max_age_seconds=age)


def test_handles_not_owned_are_forgotten_not_destroyed() -> None:
    clock = Clock()
    handles = AgedHandles(10.0, clock)
    token_object, copy = Handle(), Handle()
    handles.put("token-object", token_object, owned=False)
    handles.put("copy", copy, owned=True)
    assert list(handles.owned()) == [copy]
    clock.now = 10.0  # both are as old as they may be
    assert handles.get("token-object") is None
    assert handles.get("copy") is None
    assert (token_object.destroyed, copy.destroyed, len(handles)) == (0, 1, 0)


def test_replacing_a_handle_destroys_the_old_one_only() -> None:
    handles = AgedHandles(10.0, Clock(), bound=4)
    old, new = Handle(), Handle()
    handles.put("k", old, owned=True)
    handles.put("k", old, owned=True)  # the same handle again: kept, not destroyed
    assert old.destroyed == 0
    handles.put("k", new, owned=True)
    assert (old.destroyed, new.destroyed, handles.get("k")) == (1, 0, new)


def test_the_age_counts_from_the_last_put_not_from_use() -> None:
    clock = Clock()
    handles = AgedHandles(10.0, clock)
    handle = Handle()
    handles.put("k", handle, owned=True)
    clock.now = 9.9
    assert handles.get("k") is handle  # a use does not make it younger
    clock.now = 10.0
    assert handles.get("k") is None
    assert handle.destroyed == 1


def test_a_secret_is_admitted_at_its_second_miss_among_recent_ones() -> None:
    cache = SecretCache(SecretCacheLimits(1, 10.0, Clock()))  # remembers 4 misses
    keys = [cache_key("keybroker-kek-v1", bytes([i])) for i in range(6)]
    assert cache.admit(keys[0]) is False  # first sighting: use once, keep nothing
    assert cache.admit(keys[0]) is True  # seen lately: keep it
    assert cache.admit(keys[0]) is False  # admission spent: a new sighting starts again
    for key in keys[1:5]:  # four other misses push keys[0]'s sighting out
        cache.admit(key)
    assert cache.admit(keys[0]) is False
    assert cache.admit(keys[4]) is True  # still among the last four
