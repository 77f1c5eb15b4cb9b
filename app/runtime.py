"""Which database this process talks to: DATABASE_URL, or the embedded cluster."""

from __future__ import annotations

from app.config import Settings
from app.embedded import EmbeddedCluster


def embedded_cluster(settings: Settings) -> EmbeddedCluster:
    """The embedded cluster configured by the settings."""
    return EmbeddedCluster(home=settings.data_dir, port=settings.embedded_port)


def database_url(settings: Settings) -> str:
    """DATABASE_URL when set, otherwise the embedded cluster's URL."""
    if settings.database_url:
        return settings.database_url
    cluster = embedded_cluster(settings)
    if not cluster.initialised():
        raise RuntimeError(
            "DATABASE_URL is not set and the embedded cluster does not exist yet: "
            "run `borderwatch db up` (or `make run`)"
        )
    return cluster.url()
