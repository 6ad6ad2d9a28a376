from __future__ import annotations

from pathlib import Path

import pytest

from genreops.core.settings import Settings

pytestmark = pytest.mark.unit


def test_defaults_keep_all_state_under_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("GENREOPS_HOME", "GENREOPS_MLFLOW_TRACKING_URI", "GENREOPS_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    home = (tmp_path / ".genreops").resolve()
    assert settings.mlflow_uri == f"sqlite:///{home / 'mlflow.db'}"
    assert settings.monitoring_db_url == f"sqlite:///{home / 'monitoring.db'}"
    assert settings.s3.endpoint_url is None


def test_environment_overrides_with_genreops_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENREOPS_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("GENREOPS_S3_SECRET_ACCESS_KEY", "not-printed")
    monkeypatch.setenv("GENREOPS_DATABASE_URL", "postgresql://postgres@127.0.0.1/test")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    settings = Settings(_env_file=None)
    assert settings.s3.endpoint_url == "http://127.0.0.1:9000"
    assert settings.s3.secret_access_key == "not-printed"
    assert "not-printed" not in repr(settings) and "not-printed" not in repr(settings.s3)
    assert settings.monitoring_db_url == "postgresql://postgres@127.0.0.1/test"
    assert settings.prefect_api_url == "http://127.0.0.1:4200/api"


def test_invalid_values_are_rejected_with_the_field_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENREOPS_EXTRACT_MAX_FAILED_SHARE", "1.5")
    with pytest.raises(ValueError, match="extract_max_failed_share"):
        Settings(_env_file=None)


def test_contract_names_exist() -> None:
    """DESIGN.md names these settings; scripts rely on them."""
    fields = Settings.model_fields
    for name in ("home", "s3_endpoint_url", "mlflow_tracking_uri", "database_url", "triton_url"):
        assert name in fields
