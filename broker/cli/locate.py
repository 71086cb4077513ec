"""Where a command finds the database and the token: where the settings say, else the local
cluster and SoftHSM token under the state directory (``keybroker dev up``).

Only the command line falls back to local state. The runtime itself knows no development
set-up: given no locator, it uses what the settings name and nothing else
(``broker.runtime.configured_location``).
"""

from __future__ import annotations

import os

from broker.errors import ConfigurationError
from broker.localstate.postgres import LocalPostgres
from broker.localstate.softhsm import LocalSoftHsm
from broker.redact import Secret
from broker.runtime import HsmLocation, Location, configured_hsm
from broker.settings import Settings


def database_dsn(settings: Settings) -> Secret:
    """``database_url``, else the local cluster's DSN."""
    if settings.database_url is not None:
        return settings.database_url
    local = LocalPostgres(settings.state_dir)
    if not local.password_file.exists():
        raise ConfigurationError(
            f"no database_url set and no local cluster under {settings.state_dir}; "
            "run `keybroker dev up` or set KEYBROKER_DATABASE_URL"
        )
    return Secret(local.dsn())


def hsm_location(settings: Settings) -> HsmLocation:
    """The token the settings name, else the local SoftHSM token (whose configuration file
    this process's environment then names, for the module to read when it loads)."""
    configured = configured_hsm(settings)
    if configured is not None:
        return configured
    local = LocalSoftHsm(settings.state_dir, settings.pkcs11_module)
    if not local.label_file.exists():
        raise ConfigurationError(
            f"no token_label set and no local SoftHSM token under {settings.state_dir}; "
            "run `keybroker dev up` or set KEYBROKER_TOKEN_LABEL"
        )
    # SoftHSM reads its configuration when the module initialises, from this variable.
    os.environ.update(local.environment())
    return HsmLocation(local.module_path, local.token_label, local.user_pin)


def location(settings: Settings) -> Location:
    """Both, the token first (its error is the one reported when neither is found)."""
    hsm = hsm_location(settings)
    return Location(database_dsn(settings), hsm)
