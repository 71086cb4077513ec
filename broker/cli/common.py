"""Helpers shared by the CLI command groups: settings, async entry, runtime."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from broker import logs
from broker.cli import UsageError
from broker.errors import ConfigurationError, KeybrokerError
from broker.settings import Settings, load_settings

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


def fail(exc: KeybrokerError) -> int:
    print(f"keybroker: {exc.detail}", file=sys.stderr)
    return 1


Handler = Callable[[argparse.Namespace], int]
AnyDict = dict[str, Any]
