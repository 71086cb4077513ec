"""A SoftHSM token under the state directory, for `make run` and the tests.

The configuration comes from ``softhsm/softhsm2.conf.template``; the label and PINs are
generated once into 0600 files. The token is initialised in a child process
(``python -m broker.localstate.token_init``) that reads the PINs on standard input, so they
never appear on a command line, and that exits before the broker loads the module itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

from broker.errors import ConfigurationError
from broker.privatefiles import private_dir, read_secret, secret_file, write_private
from broker.redact import Secret

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
DEFAULT_LABEL = "keybroker"


def _template() -> str:
    packaged = resources.files("broker.localstate").joinpath("softhsm2.conf.template")
    return packaged.read_text(encoding="utf-8")


class LocalSoftHsm:
    def __init__(self, state_dir: Path, module_path: str = DEFAULT_MODULE) -> None:
        self.root = state_dir.resolve() / "softhsm"
        self.token_dir = self.root / "tokens"
        self.config_file = self.root / "softhsm2.conf"
        self.label_file = self.root / "token-label"
        self.user_pin_file = self.root / "user-pin"
        self.so_pin_file = self.root / "so-pin"
        self.module_path = module_path

    @property
    def token_label(self) -> str:
        return self.label_file.read_text(encoding="utf-8").strip()

    @property
    def user_pin(self) -> Secret:
        return read_secret(self.user_pin_file)

    def environment(self) -> dict[str, str]:
        """What the process that loads the module must have in its environment."""
        return {"SOFTHSM2_CONF": str(self.config_file)}

    def up(self) -> None:
        """Write the configuration and initialise the token, once."""
        if not Path(self.module_path).exists():
            raise ConfigurationError(
                f"SoftHSM module {self.module_path} is missing; install the 'softhsm2' package"
            )
        private_dir(self.root)
        private_dir(self.token_dir)
        write_private(self.config_file, _template().replace("@TOKEN_DIR@", str(self.token_dir)))
        if not self.label_file.exists():
            write_private(self.label_file, DEFAULT_LABEL + "\n")
        user_pin = secret_file(self.user_pin_file, 16)
        so_pin = secret_file(self.so_pin_file, 16)
        request = json.dumps(
            {
                "module": self.module_path,
                "label": self.token_label,
                "user_pin": user_pin.reveal(),
                "so_pin": so_pin.reveal(),
            }
        )
        result = subprocess.run(
            [sys.executable, "-m", "broker.localstate.token_init"],
            input=request,
            capture_output=True,
            text=True,
            env={**os.environ, **self.environment()},
            check=False,
        )
        if result.returncode != 0:
            raise ConfigurationError(
                f"SoftHSM token initialisation failed: {result.stderr.strip()}"
            )
