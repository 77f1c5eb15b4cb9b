"""The audit log, read-only (GET /audit)."""
