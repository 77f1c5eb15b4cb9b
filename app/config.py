"""Settings, read once from the environment (prefix BORDERWATCH_, plus DATABASE_URL)."""

from __future__ import annotations

import json
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# who may read /metrics without a key by default: this host only
OPERATOR_NETWORKS: tuple[IPv4Network | IPv6Network, ...] = (
    IPv4Network("127.0.0.1/32"),
    IPv6Network("::1/128"),
)


class Settings(BaseSettings):
    """Everything an operator can configure; see README.md, "Configuration"."""

    model_config = SettingsConfigDict(env_prefix="BORDERWATCH_", env_file=".env", extra="ignore")

    environment: Literal["local", "test", "production"] = "local"
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "BORDERWATCH_DATABASE_URL"),
        description="PostgreSQL/PostGIS URL; unset = the embedded cluster in data_dir",
    )
    # read replicas (docs/replicas.md): a group of its own
    read_database_url: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="streaming replicas of DATABASE_URL (hot standbys) for the reads that"
        " tolerate a small lag (tiles, incident lists and exports, analysis, OGC, reference"
        " data): one URL, several separated by commas, or a JSON list; empty = every request on"
        " the primary. A client that has just written reads its write (docs/replicas.md)",
    )
    read_max_lag_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="a replica further behind the primary than this (or unreachable) is"
        " skipped: its reads go to the primary, and /readyz says so",
    )
    read_check_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="how often each API process checks its replicas (reachable, still a"
        " standby, how far behind)",
    )

    @field_validator("read_database_url", mode="before")
    @classmethod
    def _read_urls(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("read_database_url")
    @classmethod
    def _read_urls_supported(cls, value: list[str]) -> list[str]:
        for url in value:
            async_url(url)  # ValueError for another scheme
        return value

    data_dir: Path = Field(default=PROJECT_ROOT / ".data", description="embedded cluster home")
    embedded_port: int = Field(default=54320, ge=1024, le=65535)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="API processes `borderwatch serve` starts (each with its own pool of"
        " db_pool_size connections); `--workers` overrides it",
    )
    forwarded_allow_ips: str = Field(
        default="",
        description="reverse proxies whose X-Forwarded-For is trusted by `borderwatch serve`"
        " (uvicorn's forwarded_allow_ips: addresses or networks, comma-separated, '*' = any);"
        " empty = proxy headers ignored, the client is the connection's peer",
    )
    db_pool_size: int = Field(default=20, ge=1, le=200)
    dashboard_warm_gap_s: float = Field(
        default=300.0,
        ge=0,
        le=86_400,
        description="each API process fills the dashboard's caches (national statistics,"
        " cross-boundary table, border-zone bands, hot spots, low-zoom tiles) after start and"
        " again after writes, at most this often; 0 = never (the first visit after a start or a"
        " write makes them)",
    )
    db_statement_timeout_ms: int = Field(default=30_000, ge=100)
    import_statement_timeout_ms: int = Field(
        default=900_000,
        ge=1000,
        description="per-statement timeout inside an import (API and CLI), instead of the"
        " requests' db_statement_timeout_ms",
    )
    time_zone: str = Field(
        default="Asia/Ho_Chi_Minh",
        description="IANA zone of times written without an offset (API and imports)",
    )
    home_country: str = Field(
        default="VNM", min_length=3, max_length=3, description="alpha-3 of the served country"
    )
    adjacency_gap_m: float = Field(
        default=3000.0,
        ge=0,
        le=20_000,
        description="neighbours separated by at most this gap (rivers, estuaries) are adjacent",
    )

    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="largest JSON request body accepted (bytes)"
    )
    max_import_bytes: int = Field(
        default=200 * 1_048_576, ge=1024, description="largest import upload accepted (bytes)"
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="a request body (other than an import) must arrive in full within this"
        " time (408 otherwise)",
    )
    import_body_timeout_s: float = Field(
        default=900.0,
        gt=0,
        le=86_400,
        description="an import upload must arrive in full within this time (408 otherwise)",
    )
    photo_max_bytes: int = Field(
        default=10 * 1_048_576,
        ge=1024,
        le=200 * 1_048_576,
        description="largest incident photo upload accepted (bytes; 413 over it)",
    )
    photo_max_pixels: int = Field(
        default=50_000_000,
        ge=10_000,
        le=1_000_000_000,
        description="largest incident photo accepted in pixels (width x height): a small file"
        " that decodes to more (a decompression bomb) is refused with 422",
    )
    photo_dir: Path | None = Field(
        default=None,
        description="folder for incident photos' content, as files named by their SHA-256;"
        " unset = the content is kept in PostgreSQL (one backup holds everything)",
    )
    clock_skew_s: int = Field(
        default=300, ge=0, le=86_400, description="how far in the future occurred_at may be"
    )

    cooperation_km: float = Field(
        default=10.0,
        ge=0,
        le=200,
        description="a scoped principal also sees neighbours' incidents this close to its area",
    )
    rate_limit: str = Field(
        default="600/minute",
        description="per-principal request limit (limits syntax, e.g. 600/minute; empty = off)",
    )
    tile_rate_limit: str = Field(
        default="6000/minute",
        description="per-principal limit for /tiles/ requests, counted apart from rate_limit: a"
        " map view asks for dozens of tiles at once (empty = off)",
    )
    auth_failure_limit: str = Field(
        default="30/minute",
        description="failed authentications allowed per client address; past it every request"
        " from that address that presents a key gets 429 until the window slides (empty = off)",
    )
    events_retention_hours: float = Field(
        default=168.0,
        gt=0,
        le=24 * 366,
        description="the live feed keeps events this long: a client resuming from an older"
        " event gets a `resync` event instead",
    )
    events_heartbeat_s: float = Field(
        default=15.0,
        gt=0,
        le=300,
        description="a quiet live feed sends a heartbeat this often (keeps proxies from closing"
        " it)",
    )
    events_key_check_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="an open live feed checks its key this often: a revoked or expired key's"
        " stream ends",
    )
    events_poll_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="each API process also reads the event log this often (a missed NOTIFY,"
        " events held back by a long transaction)",
    )
    webhook_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=120,
        description="the longest one webhook request may take, connecting included (a failed"
        " attempt after it)",
    )
    webhook_max_attempts: int = Field(
        default=14,
        ge=1,
        le=100,
        description="a webhook delivery that has failed this many times is dead (kept, listed"
        " and replayable: GET /alerts/deliveries?state=dead)",
    )
    webhook_backoff_base_s: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="the wait after a webhook's first failed attempt; it doubles after each"
        " further failure (half to all of it: jitter), up to webhook_backoff_cap_s",
    )
    webhook_backoff_cap_s: float = Field(
        default=3600.0,
        gt=0,
        le=86_400,
        description="the longest wait between two attempts of one webhook delivery",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="origins allowed by CORS (none by default)"
    )
    public_reference_data: bool = Field(
        default=False,
        description="serve boundaries, borders, posts and categories without a key",
    )

    log_format: Literal["json", "text"] | None = Field(
        default=None,
        description="log lines as JSON objects or as text; unset = json (text in the test"
        " environment)",
    )
    metrics_networks: list[IPv4Network | IPv6Network] = Field(
        default_factory=lambda: list(OPERATOR_NETWORKS),
        description="client networks (CIDR, a JSON list) that may read /metrics without a key;"
        " from anywhere else it needs an admin key. [] = an admin key always (behind a reverse"
        " proxy on this host, whose requests all come from 127.0.0.1)",
    )

    basemap_url: str | None = Field(
        default=None,
        description="raster tile URL template ({z}/{x}/{y}) drawn under our own layers on the"
        " dashboard where internet exists; unset = our boundaries are the base map",
    )
    basemap_attribution: str = Field(
        default="", max_length=500, description="attribution shown for basemap_url"
    )

    @property
    def cooperation_m(self) -> int:
        """The cooperation distance in whole metres."""
        return round(self.cooperation_km * 1000)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"'{value}' is not an IANA time zone (e.g. Asia/Ho_Chi_Minh)") from exc
        return value

    @field_validator("basemap_url")
    @classmethod
    def _basemap_template(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")) or not all(
            part in value for part in ("{z}", "{x}", "{y}")
        ):
            raise ValueError(
                "BORDERWATCH_BASEMAP_URL must be an http(s) tile template with {z}, {x} and {y}"
            )
        return value

    @model_validator(mode="after")
    def _production_needs_database(self) -> Settings:
        if self.environment == "production" and not self.database_url:
            raise ValueError("DATABASE_URL is required when BORDERWATCH_ENVIRONMENT=production")
        return self


def async_url(url: str) -> str:
    """Normalise a libpq-style URL to the SQLAlchemy asyncpg dialect."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError(f"unsupported database URL scheme: {url.split('://')[0]}")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings."""
    return Settings()
