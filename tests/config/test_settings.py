"""Settings: defaults, then config.toml, then HEADWATER__SECTION__KEY; bad values name the variable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from headwater.config import ConfigError, Settings, get_settings, reload_settings
from headwater.config.settings import load_settings


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("HEADWATER__LOGGING__LEVEL", "HEADWATER__ENGINE__EXECUTOR__DEFAULT_CLASS",
                "HEADWATER__CONTEXT__FLOW_RUN_ID", "HEADWATER__API__TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HEADWATER__HOME", str(tmp_path))
    reload_settings()
    yield tmp_path
    monkeypatch.undo()
    reload_settings()


def test_defaults(home: Path) -> None:
    s = load_settings()
    assert s.home == home
    assert s.logging.level == "INFO"
    assert s.engine.executor.default_class == "headwater.executors.LocalExecutor"
    assert s.flows.local_storage_directory == home / "flows"
    assert s.context.flow_run_id is None
    assert s.api.url == "http://127.0.0.1:4200"


def test_toml_file_overrides_defaults(home: Path) -> None:
    (home / "config.toml").write_text('[logging]\nlevel = "DEBUG"\n[engine.executor]\ndefault_class = "x.Y"\n')
    s = load_settings()
    assert s.logging.level == "DEBUG"
    assert s.engine.executor.default_class == "x.Y"


def test_environment_overrides_toml(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "config.toml").write_text('[logging]\nlevel = "DEBUG"\n')
    monkeypatch.setenv("HEADWATER__LOGGING__LEVEL", "ERROR")
    monkeypatch.setenv("HEADWATER__ENGINE__EXECUTOR__DEFAULT_CLASS", "headwater.executors.LocalDaskExecutor")
    monkeypatch.setenv("HEADWATER__CONTEXT__FLOW_RUN_ID", "run-123")
    s = load_settings()
    assert s.logging.level == "ERROR"
    assert s.engine.executor.default_class == "headwater.executors.LocalDaskExecutor"
    assert s.context.flow_run_id == "run-123"


def test_invalid_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER__LOGGING__LEVEL", "LOUD")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "HEADWATER__LOGGING__LEVEL" in str(err.value)
    assert "'LOUD'" in str(err.value)


def test_invalid_toml_value_names_the_setting_and_file(home: Path) -> None:
    (home / "config.toml").write_text('[logging]\nlevel = 3\n')
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "logging.level" in str(err.value)
    assert str(home / "config.toml") in str(err.value)


def test_malformed_toml_names_the_file(home: Path) -> None:
    (home / "config.toml").write_text("[logging\nlevel=")
    with pytest.raises(ConfigError, match=r"config\.toml can.t be read"):
        load_settings()


def test_secrets_are_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER__API__TOKEN", "s3cr3t-token")
    monkeypatch.setenv("HEADWATER__CONTEXT__SECRETS__DB_PASSWORD", "hunter2")
    s = load_settings()
    assert s.api.token is not None and s.api.token.get_secret_value() == "s3cr3t-token"
    assert s.context.secrets["db_password"].get_secret_value() == "hunter2"
    shown = repr(s) + str(s.model_dump())
    assert "s3cr3t-token" not in shown and "hunter2" not in shown


def test_get_settings_is_cached_until_reloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("HEADWATER__LOGGING__LEVEL", "WARNING")
    assert get_settings() is first
    assert reload_settings().logging.level == "WARNING"


def test_every_field_is_described() -> None:
    def walk(model: type) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            if not field.description:
                missing.append(f"{model.__name__}.{name}")
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                missing += walk(annotation)
        return missing

    assert walk(Settings) == []
