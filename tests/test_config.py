from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from periscope_ingest.config import Settings, load_settings, setting_env_names
from periscope_ingest.config_file import SettingsError, catalog_url_setting, data_dir_setting
from periscope_ingest.config_sections import HlsSettings


def test_defaults() -> None:
    settings = load_settings()
    assert (settings.rtmp_port, settings.http_port, settings.host) == (1935, 8080, "0.0.0.0")
    assert settings.open_publish is False  # accounts by default
    assert settings.hls.segment_duration == 2.0 and settings.hls.window == 6


def test_env_with_nested_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERISCOPE_RTMP_PORT", "1936")
    monkeypatch.setenv("PERISCOPE_OPEN_PUBLISH", "true")
    monkeypatch.setenv("PERISCOPE_HLS__WINDOW", "9")
    monkeypatch.setenv("PERISCOPE_RTMP__MAX_MESSAGE_SIZE", "1000000")
    settings = load_settings()
    assert settings.rtmp_port == 1936 and settings.open_publish is True
    assert settings.hls.window == 9 and settings.rtmp.max_message_size == 1_000_000


def test_example_toml_is_the_defaults() -> None:
    example = Path(__file__).resolve().parents[1] / "config" / "periscope.toml"
    assert load_settings(example) == load_settings()


def test_toml_file_and_env_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "p.toml"
    config.write_text("http_port = 9000\n[hls]\nsegment_duration = 4.0\n")
    monkeypatch.setenv("PERISCOPE_HTTP_PORT", "9001")
    settings = load_settings(config)
    assert settings.http_port == 9001  # env wins
    assert settings.hls.segment_duration == 4.0


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("[hls]\nwindow = 1\n", "hls.window"),
        ("[hls]\nsegmnet_duration = 2\n", "hls.segmnet_duration"),
        ("rtmp_port = 70000\n", "rtmp_port"),
        ("log_level = 'chatty'\n", "log_level"),
        ("event_loop = 'trio'\n", "event_loop"),
        ("this is not toml", "cannot read settings"),
        (
            "[hls]\nsegment_format = 'fmp4'\nlow_latency = true\npart_duration = 0.25\n"
            "part_hold_back = 0.4\n",
            "part_hold_back must be 0 or at least twice part_duration",
        ),
        ("[webhooks]\nurls = ['https://example.org/hook']\n", "webhook urls need a secret"),
        ("[webhooks]\nurls = ['http://h/']\nsecret = 'short'\n", "at least 16 characters"),
        ("https_port = 8443\n", "https_port needs tls.cert_file"),
        (
            "https_port = 8443\n[tls]\ncert_file = '/nope.pem'\nkey_file = '/nope.pem'\n",
            "tls.cert_file /nope.pem does not exist",
        ),
    ],
)
def test_invalid_settings_name_the_problem(tmp_path: Path, toml: str, needle: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    with pytest.raises(SettingsError, match=needle.replace(".", r"\.")):
        load_settings(config)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


@pytest.mark.parametrize("env_name", [None, "PERISCOPE_DATA_DIR", "periscope_data_dir"])
@pytest.mark.parametrize("toml", [None, "", 'data_dir = "from-toml"\nhttp_port = 9000\n'])
@pytest.mark.parametrize("named_by", ["argument", "environment"])
def test_the_exports_data_dir_agrees_with_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env_name, toml, named_by: str
) -> None:
    """The CLI's export reads data_dir without the settings models: same sources, same order."""
    for name in [n for n in os.environ if n.upper().startswith("PERISCOPE_")]:
        monkeypatch.delenv(name)
    if env_name is not None:
        monkeypatch.setenv(env_name, str(tmp_path / "from-env"))
    config = None
    if toml is not None:
        config = tmp_path / "p.toml"
        config.write_text(toml)
        if named_by == "environment":
            monkeypatch.setenv("PERISCOPE_CONFIG", str(config))
            config = None
    assert data_dir_setting(config) == load_settings(config).data_dir


@pytest.mark.parametrize(
    ("toml", "env"),
    [
        (None, None),
        ("[catalog]\nurl = 'postgresql://u:p@db:5432/c'\n", None),
        ("[catalog]\ntimeout = 2.0\n", None),
        ("[catalog]\nurl = 'postgresql://u:p@db:5432/c'\n", "postgres://e@h/d"),
    ],
)
def test_the_exports_catalog_url_is_the_one_the_settings_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str | None, env: str | None
) -> None:
    """export reads catalog.url without the settings models, to know if it needs them."""
    config = None
    if toml is not None:
        config = tmp_path / "p.toml"
        config.write_text(toml)
    if env is not None:
        monkeypatch.setenv("periscope_catalog__url", env)  # any case, as pydantic-settings
    assert catalog_url_setting(config) == load_settings(config).catalog.url


def test_the_exports_data_dir_refuses_what_the_settings_refuse(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        data_dir_setting(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("data_dir = \n")
    with pytest.raises(SettingsError, match="cannot read settings"):
        data_dir_setting(broken)
    with pytest.raises(SettingsError, match="cannot read settings"):
        load_settings(broken)


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("PERISCOPE_HTTP_PRT", "PERISCOPE_HTTP_PORT"),
        ("PERISCOPE_HLS_WINDOW", "PERISCOPE_HLS__WINDOW"),
        ("periscope_rtmp__idle_timout", "PERISCOPE_RTMP__IDLE_TIMEOUT"),
    ],
)
def test_an_unknown_environment_variable_is_refused_with_the_closest_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, suggestion: str
) -> None:
    monkeypatch.setenv(name, "1")
    with pytest.raises(SettingsError, match=f"unknown setting {name}; did you mean {suggestion}"):
        load_settings()


def test_every_setting_and_section_is_a_known_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PERISCOPE_HLS", '{"window": 7}')  # a whole section as JSON
    monkeypatch.setenv("PERISCOPE_RTMP__IDLE_TIMEOUT", "12")
    settings = load_settings()
    assert settings.hls.window == 7 and settings.rtmp.idle_timeout == 12


def test_serve_stops_at_start_on_a_misspelt_variable(tmp_path: Path) -> None:
    env = {**os.environ, "PERISCOPE_DATA_DIR": str(tmp_path), "PERISCOPE_HTTP_PRT": "9000"}
    result = subprocess.run(
        [sys.executable, "-m", "periscope_ingest", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "periscope-ingest: unknown setting PERISCOPE_HTTP_PRT; did you mean PERISCOPE_HTTP_PORT?\n"
    )
    assert not list(tmp_path.iterdir())  # it stopped before touching the data directory


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "periscope_ingest", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_serve_help_lists_every_setting_with_its_variable_and_default() -> None:
    result = cli("serve", "--help")
    assert result.returncode == 0
    sections = {
        name.upper()
        for name, field in Settings.model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
    }
    for name in setting_env_names()[1:]:  # all but PERISCOPE_CONFIG
        if name.removeprefix("PERISCOPE_") not in sections:  # a section is listed field by field
            assert f"  {name} = " in result.stdout, name
    assert "  PERISCOPE_HTTP_PORT = 8080   [http_port]" in result.stdout
    assert "  PERISCOPE_RTMP__IDLE_TIMEOUT = 30.0   [rtmp.idle_timeout]" in result.stdout


def test_config_show_prints_the_settings_in_effect_as_loadable_toml(tmp_path: Path) -> None:
    result = cli("config", "show", PERISCOPE_HTTP_PORT="9123", PERISCOPE_HLS__WINDOW="8")
    assert result.returncode == 0, result.stderr
    shown = tmp_path / "shown.toml"
    shown.write_text(result.stdout)
    assert load_settings(shown) == load_settings(http_port=9123, hls=HlsSettings(window=8))


def test_config_show_masks_secrets() -> None:
    result = cli(
        "config",
        "show",
        PERISCOPE_ADMIN_TOKEN="admin-secret-value",
        PERISCOPE_WEBHOOKS__URLS='["http://h/"]',
        PERISCOPE_WEBHOOKS__SECRET="webhook-secret-value",
    )
    assert result.returncode == 0, result.stderr
    assert "secret-value" not in result.stdout
    assert 'admin_token = "**********"' in result.stdout


def test_config_show_masks_the_database_password_but_shows_where_it_is() -> None:
    url = "postgresql://periscope:pg-secret-value@db.example:5433/periscope"
    result = cli("config", "show", PERISCOPE_CATALOG__URL=url)
    assert result.returncode == 0, result.stderr
    assert "pg-secret-value" not in result.stdout
    assert 'url = "postgresql://periscope:***@db.example:5433/periscope"' in result.stdout
    assert 'url = "sqlite:"' in cli("config", "show").stdout


@pytest.mark.parametrize("url", ["mysql://u:p@h/db", "sqlite:///x.db", "postgresql:/h"])
def test_a_catalog_url_of_another_kind_is_refused_without_its_password(url: str) -> None:
    result = cli("config", "show", PERISCOPE_CATALOG__URL=url)
    assert result.returncode == 2
    assert "catalog.url" in result.stderr and "neither sqlite: nor a postgresql://" in result.stderr
    assert ":p@" not in result.stderr


def test_rtmp_limits_come_from_the_settings_alone() -> None:
    """The sans-IO connection's own defaults (for tests and tools) are the settings' defaults."""
    from periscope_ingest.live.rtmp_server import rtmp_limits
    from periscope_ingest.rtmp.connection import RtmpLimits

    assert rtmp_limits(load_settings().rtmp) == RtmpLimits()


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("gs://bucket", "expected file:// or s3://BUCKET/PREFIX"),
        ("s3://", "expected file:// or s3://BUCKET/PREFIX"),
        ("s3://KEY:hunter2@bucket/prefix", "credentials go in AWS_ACCESS_KEY_ID"),
    ],
)
def test_storage_url_is_file_or_s3_without_credentials(
    monkeypatch: pytest.MonkeyPatch, url: str, needle: str
) -> None:
    monkeypatch.setenv("PERISCOPE_STORAGE__URL", url)
    with pytest.raises(SettingsError, match=needle) as caught:
        load_settings()
    assert "hunter2" not in str(caught.value)  # the error never repeats the secret
