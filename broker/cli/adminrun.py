"""How a command runs an admin operation: with the broker's settings, its database and HSM
opened, acting with every role as the local user (``broker/cli/admin.py``, and the
``policy replay`` and ``policy diff`` commands of ``broker/cli/policy.py``)."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from broker.admin.service import AdminService
from broker.cli import locate
from broker.cli.common import add_settings_arguments, cli_actor, fail, run_async, settings_from
from broker.errors import KeybrokerError
from broker.roles import Principal
from broker.runtime import Runtime

Action = Callable[[AdminService, Principal, argparse.Namespace], Awaitable[int]]


def admin_command(
    action: Action, prepare: Callable[[argparse.Namespace], None] | None = None
) -> Callable[[argparse.Namespace], int]:
    """``prepare`` checks and reads the command's own inputs before the database and the
    HSM are opened, so a usage error costs nothing and touches nothing."""

    def handler(args: argparse.Namespace) -> int:
        if prepare is not None:
            prepare(args)
        settings = settings_from(args)
        principal = Principal(actor=cli_actor(), role=None)

        async def main() -> int:
            runtime = await Runtime.start(settings, locate.location)
            try:
                return await action(AdminService(runtime), principal, args)
            finally:
                await runtime.stop()

        try:
            return run_async(main)
        except KeybrokerError as exc:
            return fail(exc)

    return handler


def admin_parser(
    group: Any,
    name: str,
    help_text: str,
    action: Action,
    prepare: Callable[[argparse.Namespace], None] | None = None,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, help=help_text)
    add_settings_arguments(parser)
    parser.set_defaults(func=admin_command(action, prepare))
    return parser
