"""Whether the broker can serve (``/readyz``): its database answers and its HSM token is
usable. The health endpoint asks this, never the runtime's pool or custody itself."""

from __future__ import annotations

import asyncio

from broker.errors import KeybrokerError, Unavailable
from broker.runtime import Runtime

READINESS_TIMEOUT_S = 3.0


class Readiness:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def checks(self) -> dict[str, str]:
        """``ok`` or why not, for the database and for the HSM, each given 3 s to answer."""
        runtime = self.runtime
        checks: dict[str, str] = {}
        for name, check in (("database", runtime.db.check), ("hsm", runtime.check_hsm)):
            try:
                await asyncio.wait_for(check(), READINESS_TIMEOUT_S)
                checks[name] = "ok"
            except Unavailable as exc:
                checks[name] = exc.detail
            except KeybrokerError as exc:  # e.g. the token holds no KEK: not ready either
                checks[name] = f"{exc.type}: {exc.detail}"
            except TimeoutError:
                checks[name] = f"no answer within {READINESS_TIMEOUT_S} s"
        return checks
