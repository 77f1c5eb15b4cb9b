"""Rate-limit counters shared by every API process

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 06:30:00

`rate_limit_counter`: one row per (limit, key, window), UNLOGGED (a crash empties it, which
forgives at most a minute of requests; no WAL per request). `rate_limit_take(...)`: a batch of
checks in one call, each a sliding window counter (this window's count plus the previous one's,
weighted by how much of it still overlaps the last period) taken under the row's lock, so that
processes counting the same key at once never both take the last request. See
app/auth/ratelimit.py and docs/decisions.md, "One rate limit for every process".
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = """
CREATE UNLOGGED TABLE rate_limit_counter (
    name text NOT NULL,
    key text NOT NULL,
    window_start bigint NOT NULL,
    count integer NOT NULL,
    expires_at timestamptz NOT NULL,
    CONSTRAINT pk_rate_limit_counter PRIMARY KEY (name, key, window_start)
) WITH (fillfactor = 50)
"""

# In order, for each i: group g[i] (a request's checks: once one is refused, the group's later
# checks are neither counted nor answered: NULL), limit `name`, `key`, at most `lim` requests per
# `period` seconds; `take` counts the request when it is allowed (false: only look). Answers
# (allowed, seconds until one more request would be allowed when refused).
TAKE = """
CREATE FUNCTION rate_limit_take(
    g integer[], names text[], keys text[], lim integer[], period integer[], take boolean[]
) RETURNS TABLE (allowed boolean, wait double precision)
LANGUAGE plpgsql AS $$
DECLARE
    now_s double precision := extract(epoch FROM clock_timestamp());
    refused integer[] := '{}';
    w bigint;
    t double precision;
    prev integer;
    cur integer;
    room double precision;
BEGIN
    FOR i IN 1 .. coalesce(array_length(names, 1), 0) LOOP
        IF g[i] = ANY (refused) THEN
            allowed := NULL;
            wait := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;
        w := floor(now_s / period[i])::bigint * period[i];
        t := now_s - w;
        SELECT c.count INTO prev FROM rate_limit_counter c
         WHERE c.name = names[i] AND c.key = keys[i] AND c.window_start = w - period[i];
        prev := coalesce(prev, 0);
        IF take[i] THEN
            INSERT INTO rate_limit_counter (name, key, window_start, count, expires_at)
            VALUES (names[i], keys[i], w, 0, to_timestamp(w + 2 * period[i]))
            ON CONFLICT DO NOTHING;
            SELECT c.count INTO cur FROM rate_limit_counter c
             WHERE c.name = names[i] AND c.key = keys[i] AND c.window_start = w
               FOR UPDATE;
        ELSE
            SELECT c.count INTO cur FROM rate_limit_counter c
             WHERE c.name = names[i] AND c.key = keys[i] AND c.window_start = w;
            cur := coalesce(cur, 0);
        END IF;
        allowed := prev * (period[i] - t) / period[i] + cur + 1 <= lim[i];
        IF allowed THEN
            wait := 0;
            IF take[i] THEN
                UPDATE rate_limit_counter c SET count = c.count + 1
                 WHERE c.name = names[i] AND c.key = keys[i] AND c.window_start = w;
            END IF;
        ELSE
            refused := refused || g[i];
            room := lim[i] - cur - 1;
            IF room >= 0 AND prev > 0 THEN
                -- this window has room: wait until the previous one weighs little enough
                wait := period[i] * (1 - room / prev) - t;
            ELSE
                -- this window is full: in the next it is the previous one, and must weigh
                -- at most lim - 1
                wait := period[i] - t
                    + greatest(0, period[i] * (1 - (lim[i] - 1)::double precision
                                                   / greatest(cur, 1)));
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$
"""


def upgrade() -> None:
    """Apply this revision."""
    op.execute(TABLE)
    op.execute(TAKE)


def downgrade() -> None:
    """Revert this revision."""
    op.execute(
        "DROP FUNCTION rate_limit_take(integer[], text[], text[], integer[], integer[], boolean[])"
    )
    op.execute("DROP TABLE rate_limit_counter")
