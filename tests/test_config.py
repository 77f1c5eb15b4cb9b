"""Settings: unsafe combinations are refused at start, with a message that says what to set."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import Settings


def test_production_refuses_to_start_without_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("BORDERWATCH_DATABASE_URL", raising=False)
    with pytest.raises(ValidationError, match="DATABASE_URL is required"):
        Settings(environment="production", _env_file=None)
    monkeypatch.setenv("DATABASE_URL", "postgresql://bw@db.internal:5432/borderwatch")
    ok = Settings(environment="production", _env_file=None)
    assert ok.database_url == "postgresql://bw@db.internal:5432/borderwatch"
    # local runs use the embedded cluster when none is given
    monkeypatch.delenv("DATABASE_URL")
    assert Settings(environment="local", _env_file=None).database_url is None


@pytest.mark.parametrize(
    ("env", "value", "says"),
    [
        ("BORDERWATCH_ENVIRONMENT", "prod", "environment"),
        ("BORDERWATCH_DB_POOL_SIZE", "0", "db_pool_size"),
        ("BORDERWATCH_COOPERATION_KM", "-1", "cooperation_km"),
    ],
)
def test_bad_values_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, says: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError, match=says):
        Settings(_env_file=None)
