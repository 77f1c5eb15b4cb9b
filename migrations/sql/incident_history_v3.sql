-- The statement-level history of incidents (triggers incident_history_inserted and
-- incident_history_updated), installed by migration 0024: 0010's functions (v2) with the
-- picture of a row naming the column 0024 adds (the reporting unit, `reporting_unit_id`), so
-- that it equals the row trigger's to_jsonb picture. Frozen: a change is a new file loaded by a
-- new migration.

CREATE OR REPLACE FUNCTION incident_history_inserted() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    act text := coalesce(nullif(current_setting('borderwatch.action', true), ''), 'create');
    who text := nullif(current_setting('borderwatch.actor', true), '');
BEGIN
    INSERT INTO incident_history (incident_id, version, action, actor, changes)
    SELECT n.id, n.version, act, who, jsonb_build_object('id', n.id, 'category', n.category, 'severity', n.severity, 'status', n.status, 'occurred_at', n.occurred_at, 'reported_at', n.reported_at, 'location_precision_m', n.location_precision_m, 'description', n.description, 'unit', n.unit, 'reporting_unit_id', n.reporting_unit_id, 'source', n.source, 'source_id', n.source_id, 'country_code', n.country_code, 'province_code', n.province_code, 'commune_code', n.commune_code, 'province_at_occurrence', n.province_at_occurrence, 'commune_at_occurrence', n.commune_at_occurrence, 'jurisdiction_path', n.jurisdiction_path, 'jurisdiction_method', n.jurisdiction_method, 'offshore_km', n.offshore_km, 'maritime_zone', n.maritime_zone, 'border_segment', n.border_segment, 'border_distance_km', n.border_distance_km, 'nearest_post_id', n.nearest_post_id, 'nearest_post_km', n.nearest_post_km, 'created_at', n.created_at, 'updated_at', n.updated_at, 'created_by', n.created_by, 'updated_by', n.updated_by, 'version', n.version, 'deleted_at', n.deleted_at, 'location', ST_AsGeoJSON(n.geom, 6)::jsonb)
      FROM inserted_rows n;
    RETURN NULL;
END
$fn$;

CREATE OR REPLACE FUNCTION incident_history_updated() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    act text := nullif(current_setting('borderwatch.action', true), '');
    who text := nullif(current_setting('borderwatch.actor', true), '');
BEGIN
    INSERT INTO incident_history (incident_id, version, action, actor, changes)
    SELECT d.id, d.version,
           coalesce(act, CASE
               WHEN d.old_deleted IS NULL AND d.new_deleted IS NOT NULL THEN 'delete'
               WHEN d.old_deleted IS NOT NULL AND d.new_deleted IS NULL THEN 'restore'
               WHEN d.old_status IS DISTINCT FROM d.new_status THEN 'status'
               ELSE 'update' END),
           who, d.changes
      FROM (SELECT n.id, n.version, o.deleted_at AS old_deleted, n.deleted_at AS new_deleted,
                   o.status AS old_status, n.status AS new_status,
                   (SELECT jsonb_object_agg(a.key, jsonb_build_array(b.value, a.value))
                      FROM jsonb_each(j.after) a LEFT JOIN jsonb_each(j.before) b ON b.key = a.key
                     WHERE a.key NOT IN ('updated_at', 'version')
                       AND b.value IS DISTINCT FROM a.value) AS changes
              FROM updated_old o
              JOIN updated_new n ON n.id = o.id
             CROSS JOIN LATERAL (SELECT jsonb_build_object('id', o.id, 'category', o.category, 'severity', o.severity, 'status', o.status, 'occurred_at', o.occurred_at, 'reported_at', o.reported_at, 'location_precision_m', o.location_precision_m, 'description', o.description, 'unit', o.unit, 'reporting_unit_id', o.reporting_unit_id, 'source', o.source, 'source_id', o.source_id, 'country_code', o.country_code, 'province_code', o.province_code, 'commune_code', o.commune_code, 'province_at_occurrence', o.province_at_occurrence, 'commune_at_occurrence', o.commune_at_occurrence, 'jurisdiction_path', o.jurisdiction_path, 'jurisdiction_method', o.jurisdiction_method, 'offshore_km', o.offshore_km, 'maritime_zone', o.maritime_zone, 'border_segment', o.border_segment, 'border_distance_km', o.border_distance_km, 'nearest_post_id', o.nearest_post_id, 'nearest_post_km', o.nearest_post_km, 'created_at', o.created_at, 'updated_at', o.updated_at, 'created_by', o.created_by, 'updated_by', o.updated_by, 'version', o.version, 'deleted_at', o.deleted_at, 'location', ST_AsGeoJSON(o.geom, 6)::jsonb) AS before, jsonb_build_object('id', n.id, 'category', n.category, 'severity', n.severity, 'status', n.status, 'occurred_at', n.occurred_at, 'reported_at', n.reported_at, 'location_precision_m', n.location_precision_m, 'description', n.description, 'unit', n.unit, 'reporting_unit_id', n.reporting_unit_id, 'source', n.source, 'source_id', n.source_id, 'country_code', n.country_code, 'province_code', n.province_code, 'commune_code', n.commune_code, 'province_at_occurrence', n.province_at_occurrence, 'commune_at_occurrence', n.commune_at_occurrence, 'jurisdiction_path', n.jurisdiction_path, 'jurisdiction_method', n.jurisdiction_method, 'offshore_km', n.offshore_km, 'maritime_zone', n.maritime_zone, 'border_segment', n.border_segment, 'border_distance_km', n.border_distance_km, 'nearest_post_id', n.nearest_post_id, 'nearest_post_km', n.nearest_post_km, 'created_at', n.created_at, 'updated_at', n.updated_at, 'created_by', n.created_by, 'updated_by', n.updated_by, 'version', n.version, 'deleted_at', n.deleted_at, 'location', ST_AsGeoJSON(n.geom, 6)::jsonb) AS after) j) d
     WHERE d.changes IS NOT NULL;
    RETURN NULL;
END
$fn$;
