-- The live feed's log of incident changes (triggers incident_events_inserted and
-- incident_events_updated), installed by migration 0015. One row per created, changed, deleted
-- or restored incident, written per statement from the transition tables, with the incident's
-- picture that filters and scopes read (app/events/). A re-derivation that changes only the
-- derived columns (after a boundary load) is not an event. One NOTIFY per statement, sent by
-- PostgreSQL at commit, wakes every API process. Frozen: a change is a new file.

CREATE OR REPLACE FUNCTION incident_events_inserted() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO event_log (kind, incident_id, version, actor, category, severity, status,
                           occurred_at, geom, jurisdiction_path, border_segment,
                           border_distance_km)
    SELECT 'incident.created', n.id, n.version,
           nullif(current_setting('borderwatch.actor', true), ''),
           n.category, n.severity, n.status, n.occurred_at, n.geom, n.jurisdiction_path,
           n.border_segment, n.border_distance_km
      FROM inserted_rows n
     WHERE n.deleted_at IS NULL;
    IF FOUND THEN
        PERFORM pg_notify('borderwatch_events', '');
    END IF;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION incident_events_updated() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO event_log (kind, incident_id, version, actor, category, severity, status,
                           occurred_at, geom, jurisdiction_path, border_segment,
                           border_distance_km, was_geom, was_path)
    SELECT CASE
               WHEN o.deleted_at IS NULL AND n.deleted_at IS NOT NULL THEN 'incident.deleted'
               WHEN o.deleted_at IS NOT NULL AND n.deleted_at IS NULL THEN 'incident.restored'
               WHEN o.status IS DISTINCT FROM n.status
                    AND (o.category, o.severity, o.occurred_at, o.description, o.unit,
                         o.location_precision_m, o.source, o.source_id)
                        IS NOT DISTINCT FROM
                        (n.category, n.severity, n.occurred_at, n.description, n.unit,
                         n.location_precision_m, n.source, n.source_id)
                    AND ST_Equals(o.geom, n.geom) THEN 'incident.status'
               ELSE 'incident.changed' END,
           n.id, n.version, nullif(current_setting('borderwatch.actor', true), ''),
           n.category, n.severity, n.status, n.occurred_at, n.geom, n.jurisdiction_path,
           n.border_segment, n.border_distance_km,
           -- where it was, when it moved: a subscriber that saw it there hears that it left
           CASE WHEN NOT ST_Equals(o.geom, n.geom)
                  OR o.jurisdiction_path IS DISTINCT FROM n.jurisdiction_path THEN o.geom END,
           CASE WHEN NOT ST_Equals(o.geom, n.geom)
                  OR o.jurisdiction_path IS DISTINCT FROM n.jurisdiction_path
                THEN o.jurisdiction_path END
      FROM updated_old o
      JOIN updated_new n ON n.id = o.id
     WHERE NOT (o.deleted_at IS NOT NULL AND n.deleted_at IS NOT NULL)
       AND ((o.category, o.severity, o.status, o.occurred_at, o.description, o.unit,
             o.location_precision_m, o.source, o.source_id, o.deleted_at IS NULL)
            IS DISTINCT FROM
            (n.category, n.severity, n.status, n.occurred_at, n.description, n.unit,
             n.location_precision_m, n.source, n.source_id, n.deleted_at IS NULL)
            OR NOT ST_Equals(o.geom, n.geom));
    IF FOUND THEN
        PERFORM pg_notify('borderwatch_events', '');
    END IF;
    RETURN NULL;
END
$fn$;
