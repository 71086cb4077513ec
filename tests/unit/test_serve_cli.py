"""``keybroker serve --workers N``: each worker process rebuilds the very settings the command
line gave (``--config``, ``--host``, ``--port``, ``--state-dir``, the demo's test root) from
the environment it inherits, the port is bound before anything else, and the supervisor
prepares the token before any worker starts. uvicorn, the listening socket and the token
preparation are replaced by recorders; nothing listens."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from broker.api.guard import GuardedProtocol
from broker.cli import main
from broker.cli import serve as serve_module
from broker.cli.serve import worker_environment
from broker.errors import ConfigurationError
from broker.redact import Secret
from broker.settings import Settings, load_settings

CONFIG = """\
port = 9000
log_level = "debug"
database_url = "postgresql://broker:hunter2@db.internal/keybroker"
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "keybroker.toml"
    path.write_text(CONFIG)
    return path


def test_config_file_and_overrides_reach_the_workers(config_file: Path) -> None:
    environ = {"KEYBROKER_LOG_FORMAT": "json", "PATH": "/usr/bin"}
    settings = load_settings(config_file, environ).with_overrides(
        host="192.0.2.10", workers=3, state_dir=Path("/srv/keybroker")
    )
    env = worker_environment(settings, config_file, environ)
    assert env == {
        **environ,
        "KEYBROKER_CONFIG": str(config_file),
        "KEYBROKER_HOST": "192.0.2.10",
        "KEYBROKER_WORKERS": "3",
        "KEYBROKER_STATE_DIR": "/srv/keybroker",
    }
    rebuilt = load_settings(None, env)
    assert rebuilt == settings
    assert (rebuilt.port, rebuilt.log_level, rebuilt.log_format) == (9000, "debug", "json")
    assert rebuilt.database_url == Secret("postgresql://broker:hunter2@db.internal/keybroker")


def test_values_without_a_file_become_variables(tmp_path: Path) -> None:
    roots = (tmp_path / "a.pem", tmp_path / "demo" / "demo-snp.pem")
    settings = Settings(port=9100, workers=2, insecure_test_roots=roots, collateral_fetch=False)
    env = worker_environment(settings, None, {})
    assert env == {
        "KEYBROKER_PORT": "9100",
        "KEYBROKER_WORKERS": "2",
        "KEYBROKER_INSECURE_TEST_ROOTS": os.pathsep.join(map(str, roots)),
        "KEYBROKER_COLLATERAL_FETCH": "false",
    }
    assert load_settings(None, env) == settings


def test_a_command_line_config_wins_over_an_inherited_one(config_file: Path) -> None:
    environ = {"KEYBROKER_CONFIG": "/etc/keybroker/other.toml"}
    settings = load_settings(config_file, environ).with_overrides(workers=2)
    env = worker_environment(settings, config_file, environ)
    assert env["KEYBROKER_CONFIG"] == str(config_file)
    assert load_settings(None, env) == settings


LISTENER = object()


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What happened, in order: ``listen HOST:PORT`` (the port was bound), ``prepare`` (the
    supervisor made the token ready) and ``run`` (uvicorn started, on that socket)."""
    happened: list[str] = []

    def fake_listen(settings: Settings) -> object:
        happened.append(f"listen {settings.host}:{settings.port}")
        return LISTENER

    monkeypatch.setattr(serve_module, "listen", fake_listen)
    monkeypatch.setattr(serve_module, "allow_open_files", lambda _s: 1024)
    monkeypatch.setattr(serve_module, "prepare_token", lambda _s: happened.append("prepare"))
    return happened


def recording_uvicorn(
    monkeypatch: pytest.MonkeyPatch, events: list[str], seen: dict[str, Any]
) -> None:
    """``run_uvicorn`` records its configuration (and what a worker would load) in ``seen``."""

    def fake_run(config: uvicorn.Config, listener: object) -> None:
        assert listener is LISTENER
        events.append("run")
        seen.update(vars(config), worker=load_settings())

    monkeypatch.setattr(serve_module, "run_uvicorn", fake_run)


def test_serve_with_workers_hands_its_settings_to_the_workers(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, events: list[str]
) -> None:
    monkeypatch.setattr(os, "environ", {"PATH": "/usr/bin"})
    seen: dict[str, Any] = {}
    recording_uvicorn(monkeypatch, events, seen)
    argv = ["serve", "--config", str(config_file), "--workers", "4", "--host", "192.0.2.10"]
    assert main(argv) == 0
    # The port is taken first; the token's objects exist before any worker races to create
    # them.
    assert events == ["listen 192.0.2.10:9000", "prepare", "run"]
    assert (seen["app"], seen["factory"]) == ("broker.cli.serve:app_from_environment", True)
    assert (seen["host"], seen["port"], seen["workers"]) == ("192.0.2.10", 9000, 4)
    assert seen["proxy_headers"] is False  # X-Forwarded-For is not believed
    assert seen["http"] is GuardedProtocol  # the connection limits, one write per response
    assert (seen["ws"], seen["timeout_keep_alive"]) == ("none", 5)
    worker: Settings = seen["worker"]
    assert (worker.host, worker.port, worker.workers, worker.log_level) == (
        "192.0.2.10",
        9000,
        4,
        "debug",
    )
    assert worker == load_settings(config_file, {}).with_overrides(host="192.0.2.10", workers=4)


def test_one_worker_does_not_believe_forwarded_headers(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, events: list[str]
) -> None:
    seen: dict[str, Any] = {}
    recording_uvicorn(monkeypatch, events, seen)
    assert main(["serve", "--config", str(config_file)]) == 0
    assert seen["proxy_headers"] is False
    assert seen["http"] is GuardedProtocol
    # One process: its own start makes the token ready.
    assert events == ["listen 127.0.0.1:9000", "run"]


def test_a_token_that_cannot_be_prepared_starts_no_worker(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(_settings: Settings) -> None:
        raise ConfigurationError("the token holds several objects under one label")

    monkeypatch.setattr(serve_module, "prepare_token", refuse)
    monkeypatch.setattr(serve_module, "listen", lambda _s: LISTENER)
    monkeypatch.setattr(serve_module, "run_uvicorn", lambda *a: pytest.fail("uvicorn ran"))
    assert main(["serve", "--config", str(config_file), "--workers", "2"]) == 1
    assert "several objects under one label" in capsys.readouterr().err


@pytest.mark.parametrize(("variables", "port"), [(["PORT=9123"], "--port 9123"), ([], None)])
def test_make_run_passes_port_to_the_broker(variables: list[str], port: str | None) -> None:
    """``make run PORT=N`` is what the busy-port message tells an operator to type."""
    root = Path(__file__).resolve().parents[2]
    dry_run = subprocess.run(
        ["make", "--dry-run", "--always-make", "run", *variables],  # prints, runs nothing
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    command = next(line for line in dry_run.stdout.splitlines() if "dev run --demo" in line)
    assert (command.split("--port")[1].strip() if "--port" in command else None) == (
        port and port.split()[1]
    )
