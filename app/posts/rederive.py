"""Deriving incidents' nearest post again after a post changes, in bounded batches.

A change (create, move, close, import) plans a job in the change's own transaction:
the incidents whose nearest post may differ now are listed in `post_rederive_item` — those
whose nearest post is the changed post, and those nearer to its (new) position than to their
current nearest post (on the spheroid, with the derivation's 1 % + 10 m margin) that occurred
while it is in force. The job then runs batch by batch (`run`): each batch derives the nearest
post of its incidents with the functions the incident trigger uses (incident_derive_v7.sql:
home posts in force on the day the incident occurred), writes the ones that differ, removes
its items and counts its progress, and commits. Readers never wait and never see half a
batch: each incident has its old nearest post until its batch commits, its new one after.
Several runners may share a job (items are claimed with SKIP LOCKED); a job left behind by a
stopped process is finished by `borderwatch posts rederive`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import NotFound
from app.posts.models import RederiveJob

BATCH = 1000
MAX_BATCH = 50_000
# (done, total)
Progress = Callable[[int, int], None]

JOB_SQL = text(
    """
    INSERT INTO post_rederive_job (post_id, reason, actor, batch_size)
    VALUES (CASE WHEN cardinality(CAST(:post_ids AS integer[])) = 1
                 THEN (CAST(:post_ids AS integer[]))[1] END,
            :reason, :actor, :batch)
    RETURNING id
    """
)

ITEMS_SQL = text(
    """
    INSERT INTO post_rederive_item (job_id, incident_id)
    SELECT CAST(:job AS integer), i.id
      FROM incident i
     WHERE i.nearest_post_id = ANY(CAST(:post_ids AS integer[]))
    UNION
    SELECT CAST(:job AS integer), i.id
      FROM incident i, border_post p
     WHERE p.id = ANY(CAST(:post_ids AS integer[]))
       AND incident_post_eligible(p.country, p.valid_from, p.valid_to,
                                  incident_local_day(i.occurred_at))
       AND (i.nearest_post_km IS NULL
            OR ST_DWithin(i.geom::geography, p.geom::geography,
                          i.nearest_post_km * 1010 + 10, false))
    """
)

BATCH_SQL = text(
    """
    WITH claimed AS (
        SELECT incident_id FROM post_rederive_item
         WHERE job_id = :job ORDER BY incident_id LIMIT :n FOR UPDATE SKIP LOCKED
    ), derived AS (
        SELECT x.id, d.post_id, d.distance_km
          FROM incident x
          JOIN claimed c ON c.incident_id = x.id
          CROSS JOIN LATERAL incident_post_candidates_on(
                x.geom::geography, 0, incident_local_day(x.occurred_at)) k
          LEFT JOIN LATERAL incident_post_pick(x.geom::geography, NULL, k.ids, k.distances_m) d
            ON true
    ), written AS (
        UPDATE incident i
           SET nearest_post_id = d.post_id, nearest_post_km = d.distance_km
          FROM derived d
         WHERE i.id = d.id
           AND (i.nearest_post_id, i.nearest_post_km) IS DISTINCT FROM (d.post_id, d.distance_km)
        RETURNING 1
    ), gone AS (
        DELETE FROM post_rederive_item r USING claimed c
         WHERE r.job_id = :job AND r.incident_id = c.incident_id
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM written)
    """
)


async def plan(
    *, session: AsyncSession, post_ids: list[int], reason: str, actor: str, batch: int = BATCH
) -> tuple[int, int]:
    """List the incidents a change of the posts `post_ids` may affect (in the caller's
    transaction, after the change): the job's id and how many incidents it holds."""
    job_id = (
        await session.execute(
            JOB_SQL, {"post_ids": post_ids, "reason": reason, "actor": actor, "batch": batch}
        )
    ).scalar_one()
    result: Any = await session.execute(ITEMS_SQL, {"job": job_id, "post_ids": post_ids})
    total = int(result.rowcount or 0)
    await session.execute(
        text("UPDATE post_rederive_job SET total = :n WHERE id = :job"),
        {"n": total, "job": job_id},
    )
    return int(job_id), total


def status_of(job: RederiveJob) -> dict[str, Any]:
    """A job as the API reports it."""
    return {
        "id": job.id,
        "post_id": job.post_id,
        "reason": job.reason,
        "state": job.state,
        "total": job.total,
        "done": job.done,
        "changed": job.changed,
        "batch_size": job.batch_size,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "error": job.error,
        "status_url": f"/border-posts/jobs/{job.id}",
    }


async def status(*, session: AsyncSession, job_id: int) -> dict[str, Any]:
    """The job's state and progress."""
    job = await session.get(RederiveJob, job_id, populate_existing=True)
    if job is None:
        raise NotFound(f"no re-derivation job {job_id}")
    return status_of(job)


async def run(
    *,
    session: AsyncSession,
    job_id: int,
    batch: int | None = None,
    progress: Progress | None = None,
    commit: bool = True,
    max_batches: int | None = None,
) -> dict[str, Any]:
    """Run a job to its end (or for `max_batches` batches), a batch per transaction
    (`commit`: commit each batch; else the caller's transaction holds them all). Returns its
    status."""
    job = await session.get(RederiveJob, job_id)
    if job is None:
        raise NotFound(f"no re-derivation job {job_id}")
    size = max(1, min(MAX_BATCH, batch or job.batch_size))
    await session.execute(
        text(
            "UPDATE post_rederive_job SET state = 'running', started_at = coalesce(started_at,"
            " now()) WHERE id = :job AND state IN ('pending', 'running')"
        ),
        {"job": job_id},
    )
    actor = job.actor or "rederive"
    batches = 0
    while max_batches is None or batches < max_batches:
        batches += 1
        await session.execute(
            text(
                "SELECT set_config('borderwatch.actor', :actor, true),"
                " set_config('borderwatch.action', 'post_rederive', true)"
            ),
            {"actor": actor},
        )
        done, changed = (await session.execute(BATCH_SQL, {"job": job_id, "n": size})).one()
        row = (
            await session.execute(
                text(
                    "UPDATE post_rederive_job SET done = done + :d, changed = changed + :c"
                    " WHERE id = :job RETURNING done, total"
                ),
                {"d": int(done), "c": int(changed), "job": job_id},
            )
        ).one()
        if commit:
            await session.commit()
        if progress is not None:
            progress(int(row[0]), int(row[1]))
        if int(done) == 0:
            break
    else:
        return await status(session=session, job_id=job_id)  # stopped before the end
    left = (
        await session.execute(
            select(text("count(*)"))
            .select_from(text("post_rederive_item"))
            .where(text("job_id = :job")),
            {"job": job_id},
        )
    ).scalar_one()
    if int(left) == 0:  # another runner may still hold claimed items: it finishes the job
        await session.execute(
            text(
                "UPDATE post_rederive_job SET state = 'done', finished_at = now()"
                " WHERE id = :job AND state <> 'done'"
            ),
            {"job": job_id},
        )
    if commit:
        await session.commit()
    return await status(session=session, job_id=job_id)


async def pending(*, session: AsyncSession) -> list[int]:
    """The jobs not finished (pending, or left running by a stopped process), oldest first."""
    rows = await session.execute(
        select(RederiveJob.id)
        .where(RederiveJob.state.in_(("pending", "running")))
        .order_by(RederiveJob.id)
    )
    return [int(r) for r in rows.scalars()]
