"""API keys: `bw_<prefix>_<secret>`; the prefix finds the principal, a SHA-256 hash checks it.

Keys carry 256 bits of randomness, so a fast hash is enough (no password-style stretching is
needed to resist guessing); the key itself is shown once and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

PREFIX_LEN = 10


@dataclass(frozen=True)
class NewKey:
    """A freshly generated key: show `key` once, store `prefix` and `hash`."""

    key: str
    prefix: str
    hash: str


def digest(key: str) -> str:
    """The stored hash of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def generate() -> NewKey:
    """A new random key."""
    prefix = secrets.token_hex(PREFIX_LEN // 2)
    key = f"bw_{prefix}_{secrets.token_urlsafe(32)}"
    return NewKey(key=key, prefix=prefix, hash=digest(key))


def prefix_of(key: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "bw" or len(parts[1]) != PREFIX_LEN or len(parts[2]) < 20:
        return None
    return parts[1]


def matches(key: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented key with a stored hash."""
    return hmac.compare_digest(digest(key), stored_hash)


_LIFETIME = re.compile(r"^\s*(\d{1,5})\s*([hdw])\s*$")
_UNIT = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
MAX_LIFETIME = timedelta(days=5 * 366)


def parse_lifetime(text: str) -> timedelta:
    """A key lifetime such as `90d`, `12h` or `2w` (1 hour to 5 years); ValueError otherwise."""
    m = _LIFETIME.match(text.lower())
    if m is None:
        raise ValueError(f"'{text}' is not a lifetime like 90d, 12h or 2w")
    lifetime = int(m.group(1)) * _UNIT[m.group(2)]
    if not timedelta(hours=1) <= lifetime <= MAX_LIFETIME:
        raise ValueError("a key lifetime must be between 1 hour and 5 years")
    return lifetime
