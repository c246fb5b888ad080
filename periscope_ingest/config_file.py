"""Where settings come from, and the data directory read without the settings models.

``export`` is the CLI's heaviest job: PyAV's libraries alone take about 20 MiB. It needs one
setting, ``data_dir``, and loading every setting through pydantic-settings would add about 12 MiB
to the process's peak RSS (docs/benchmarks.md, third set). ``data_dir_setting`` reads it from
the same sources, in the same order, as config.Settings (tests/test_config.py checks that they
agree): ``PERISCOPE_DATA_DIR`` (in any case, as pydantic-settings matches it), then ``data_dir``
in the TOML file named by ``--config`` or ``PERISCOPE_CONFIG``, then ``data``. The other settings
are not read, so not validated: ``serve`` and the other commands do that.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

CONFIG_ENV = "PERISCOPE_CONFIG"
DATA_DIR_ENV = "PERISCOPE_DATA_DIR"
DEFAULT_DATA_DIR = Path("data")


class SettingsError(Exception):
    """Settings could not be loaded; the message says which value is wrong and why."""


def config_file_named(config_file: Path | None) -> Path | None:
    """The TOML file to read: ``--config``, else ``PERISCOPE_CONFIG``; it must exist."""
    if config_file is not None:
        if not config_file.is_file():
            raise SettingsError(f"config file {config_file} does not exist")
        return config_file
    named = os.environ.get(CONFIG_ENV)
    if named and not Path(named).is_file():
        raise SettingsError(f"config file {named} (from {CONFIG_ENV}) does not exist")
    return Path(named) if named else None


def data_dir_setting(config_file: Path | None = None) -> Path:
    for name, value in os.environ.items():
        if name.upper() == DATA_DIR_ENV:
            return Path(value)
    path = config_file_named(config_file)
    if path is None:
        return DEFAULT_DATA_DIR
    try:
        value = tomllib.loads(path.read_text()).get("data_dir", str(DEFAULT_DATA_DIR))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read settings: {exc}") from None
    if not isinstance(value, str):
        raise SettingsError("invalid settings: data_dir: must be a path")
    return Path(value)


CATALOG_URL_ENV = "PERISCOPE_CATALOG__URL"


def catalog_url_setting(config_file: Path | None = None) -> str:
    """catalog.url read as data_dir_setting reads data_dir, for ``export`` to know whether its
    catalog is PostgreSQL (then it loads the settings in full) without the settings models."""
    for name, value in os.environ.items():
        if name.upper() == CATALOG_URL_ENV:
            return value
    path = config_file_named(config_file)
    if path is None:
        return "sqlite:"
    try:
        section = tomllib.loads(path.read_text()).get("catalog", {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read settings: {exc}") from None
    value = section.get("url", "sqlite:") if isinstance(section, dict) else "sqlite:"
    return value if isinstance(value, str) else "sqlite:"
