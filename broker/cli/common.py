"""Helpers shared by the CLI command groups: settings, async entry, input files, output,
the acting user, and the database."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from broker import logs
from broker.cli import UsageError, locate
from broker.errors import ConfigurationError, KeybrokerError
from broker.settings import Settings, load_settings
from broker.store.database import Database
from broker.store.migrate import migrate
from broker.store.sqlfiles import Migration

T = TypeVar("T")


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="settings TOML file (else KEYBROKER_CONFIG)")
    parser.add_argument("--state-dir", type=Path, help="state directory (default .keybroker)")


def settings_from(args: argparse.Namespace, *, service: bool = False) -> Settings:
    """Settings for a command; only a running service logs below warnings by default."""
    try:
        settings = load_settings(getattr(args, "config", None))
    except ConfigurationError as exc:
        raise UsageError(exc.detail) from None
    state_dir = getattr(args, "state_dir", None)
    if state_dir is not None:
        settings = settings.with_overrides(state_dir=state_dir)
    level = settings.log_level if service else "warning"
    logs.configure(settings.log_format, level)
    return settings


def run_async(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro_fn()

    return asyncio.run(main())


def read_input(path: Path) -> bytes:
    """The bytes of a file named on the command line; unreadable is a usage error."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def print_json(value: Any) -> None:
    """What admin and collateral commands print: indented JSON with sorted keys."""
    json.dump(value, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def cli_actor() -> str:
    """Who the audit trail names for a command-line action: the local user."""
    return f"cli:{getpass.getuser()}"


async def with_database(
    settings: Settings, action: Callable[[Database, list[Migration]], Awaitable[T]]
) -> T:
    """Open only the database (no HSM), apply pending migrations, so that a command may run
    before the broker's first start, then ``action(db, migrations applied now)``."""
    db = await Database.connect(locate.database_dsn(settings).reveal(), 1, 2)
    try:
        async with db.connection() as conn:
            applied = await migrate(conn)
        return await action(db, applied)
    finally:
        await db.close()


def fail(exc: KeybrokerError) -> int:
    print(f"keybroker: {exc.detail}", file=sys.stderr)
    return 1


Handler = Callable[[argparse.Namespace], int]
AnyDict = dict[str, Any]
