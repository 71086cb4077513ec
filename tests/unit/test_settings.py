from __future__ import annotations

from pathlib import Path

import pytest

from broker.errors import ConfigurationError
from broker.redact import Secret
from broker.settings import Settings, load_settings


def test_defaults_without_file_or_environment() -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.insecure_options() == {}


def test_environment_overrides_file(tmp_path: Path) -> None:
    config = tmp_path / "keybroker.toml"
    config.write_text('port = 9000\nhost = "::1"\nhsm_threads = 2\n')
    settings = load_settings(config, environ={"KEYBROKER_PORT": "9100"})
    assert (settings.port, settings.host, settings.hsm_threads) == (9100, "::1", 2)


def test_zero_hsm_threads_means_inline() -> None:
    assert load_settings(environ={"KEYBROKER_HSM_THREADS": "0"}).hsm_threads == 0


def test_hsm_secret_cache_defaults_and_zero_disables() -> None:
    assert (Settings().hsm_secret_cache_size, Settings().hsm_secret_cache_seconds) == (256, 300)
    environ = {"KEYBROKER_HSM_SECRET_CACHE_SIZE": "0"}
    assert load_settings(environ=environ).hsm_secret_cache_size == 0


def test_release_context_cache_defaults_and_zero_disables() -> None:
    assert Settings().release_context_cache_size == 4096
    environ = {"KEYBROKER_RELEASE_CONTEXT_CACHE_SIZE": "0"}
    assert load_settings(environ=environ).release_context_cache_size == 0


def test_secret_settings_are_redacted() -> None:
    settings = load_settings(environ={"KEYBROKER_DATABASE_URL": "postgresql://u:hunter2@db/x"})
    assert isinstance(settings.database_url, Secret)
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.database_url)
    assert settings.database_url.reveal() == "postgresql://u:hunter2@db/x"


def test_insecure_options_are_listed(tmp_path: Path) -> None:
    root = tmp_path / "root.pem"
    settings = load_settings(environ={"KEYBROKER_INSECURE_TEST_ROOTS": str(root)})
    assert settings.insecure_test_roots == (root,)
    assert settings.insecure_options() == {"insecure_test_roots": (root,)}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("prot = 1\n", "unknown settings: prot"),
        ("port = 0\n", "port 0 outside 1..65535"),
        ('port = "many"\n', "setting port"),
        ('log_format = "xml"\n', "log_format"),
        ("challenge_ttl_seconds = 5\n", "challenge_ttl_seconds"),
        ("port = [\n", "settings file"),
        ("hsm_threads = -1\n", "hsm_threads must be at least 0"),
        ("hsm_secret_cache_size = -1\n", r"hsm_secret_cache_size must be within 0\.\.65536"),
        ("hsm_secret_cache_size = 65537\n", r"hsm_secret_cache_size must be within 0\.\.65536"),
        (
            "release_context_cache_size = -1\n",
            r"release_context_cache_size must be within 0\.\.1048576",
        ),
        (
            "release_context_cache_size = 1048577\n",
            r"release_context_cache_size must be within 0\.\.1048576",
        ),
        (
            "unauthenticated_audit_sources = -1\n",
            r"unauthenticated_audit_sources must be within 0\.\.65536",
        ),
        (
            "unauthenticated_audit_sources = 65537\n",
            r"unauthenticated_audit_sources must be within 0\.\.65536",
        ),
        ("hsm_secret_cache_seconds = 0\n", r"hsm_secret_cache_seconds must be within 1\.\.86400"),
        (
            "hsm_secret_cache_seconds = 86401\n",
            r"hsm_secret_cache_seconds must be within 1\.\.86400",
        ),
        ("max_connections = 0\n", r"max_connections must be within 1\.\.1048576"),
        ("max_open_requests_per_client = -1\n", "max_open_requests_per_client must be >= 0"),
        (
            "max_request_bytes_in_flight = 1048575\n",
            "max_request_bytes_in_flight must be >= max_request_bytes",
        ),
        ("max_request_head_bytes = 1023\n", "max_request_head_bytes must be within 1024"),
        (
            "max_request_head_bytes = 33554433\n",
            r"max_request_head_bytes must be within 1024\.\.max_request_bytes_in_flight",
        ),
        ("request_head_timeout_seconds = 0\n", r"request_head_timeout_seconds must be within"),
        ("request_body_timeout_seconds = 3601\n", r"request_body_timeout_seconds must be within"),
        ("keep_alive_timeout_seconds = 0\n", r"keep_alive_timeout_seconds must be within 1"),
    ],
)
def test_invalid_settings_are_refused(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        load_settings(config, environ={})


def test_connection_limits_default_to_what_docs_operations_md_explains() -> None:
    settings = Settings()
    assert (settings.request_head_timeout_seconds, settings.request_body_timeout_seconds) == (
        10,
        30,
    )
    assert (settings.max_connections, settings.max_open_requests_per_client) == (2048, 8)
    assert settings.max_request_bytes_in_flight == 32 * 1024 * 1024
    assert settings.max_request_head_bytes == 256 * 1024
    assert settings.keep_alive_timeout_seconds == 5
    # One address cannot hold more than a quarter of the bytes a worker holds.
    one_client = settings.max_open_requests_per_client * settings.max_request_bytes
    assert 4 * one_client <= settings.max_request_bytes_in_flight


def test_secret_compares_in_constant_time_and_hides_itself() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert repr(Secret("1234")) == "Secret('***')"
    assert f"{Secret('1234')}" == "Secret('***')"


def test_collateral_defaults_are_the_vendor_services() -> None:
    from broker.collateral.amd_kds import DEFAULT_KDS_URL, DEFAULT_TIMEOUT
    from broker.collateral.intel_pcs import DEFAULT_BASE_URL, DEFAULT_ROOT_CRL_URL

    settings = Settings()
    assert settings.collateral_fetch is True
    assert settings.amd_kds_url == DEFAULT_KDS_URL
    assert settings.intel_pcs_url == DEFAULT_BASE_URL
    assert settings.intel_root_crl_url == DEFAULT_ROOT_CRL_URL
    assert settings.collateral_timeout_seconds == DEFAULT_TIMEOUT


def test_collateral_settings_from_the_environment() -> None:
    settings = load_settings(
        environ={
            "KEYBROKER_COLLATERAL_FETCH": "off",
            "KEYBROKER_INTEL_PCS_URL": "http://pccs.internal:8081",
            "KEYBROKER_COLLATERAL_TIMEOUT_SECONDS": "3",
        }
    )
    assert settings.collateral_fetch is False
    assert settings.intel_pcs_url == "http://pccs.internal:8081"
    assert settings.collateral_timeout_seconds == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('amd_kds_url = "kdsintf.amd.com"\n', "amd_kds_url 'kdsintf.amd.com' is not an http"),
        ('intel_pcs_url = "ftp://pcs"\n', "intel_pcs_url"),
        ("collateral_timeout_seconds = 0\n", "collateral_timeout_seconds must be within"),
        ('collateral_fetch = "maybe"\n', "setting collateral_fetch"),
    ],
)
def test_bad_collateral_settings(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "keybroker.toml"
    config.write_text(content)
    with pytest.raises(ConfigurationError, match=message):
        load_settings(config, environ={})
