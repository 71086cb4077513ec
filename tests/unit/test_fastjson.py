from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from broker.fastjson import dumps

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(values, st.booleans())
def test_writes_what_the_json_module_writes(value: object, sort_keys: bool) -> None:
    # Integers beyond 64 bits take the json-module fallback; everything else is orjson's.
    expected = json.dumps(value, ensure_ascii=False, sort_keys=sort_keys, separators=(",", ":"))
    assert dumps(value, sort_keys=sort_keys) == expected.encode("utf-8")


def test_integers_beyond_64_bits_are_written_exactly() -> None:
    assert dumps({"b": 2**70, "a": -(2**70)}, sort_keys=True) == (
        b'{"a":-1180591620717411303424,"b":1180591620717411303424}'
    )
