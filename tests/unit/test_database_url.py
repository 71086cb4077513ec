"""A malformed database URL is a configuration error that never repeats the URL."""

from __future__ import annotations

import pytest

from broker.errors import ConfigurationError
from broker.store.database import Database


async def test_a_bad_url_does_not_leak_its_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        await Database.connect("postgresql://user:hunter2/x@localhost/db", 1, 1)
    assert caught.value.detail == "the database URL is not a valid PostgreSQL URL"
    assert "hunter2" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
