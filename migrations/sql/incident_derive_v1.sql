-- incident_derive(), as migration 0001 (foundation schema) installed it. Frozen: the migrations that load
-- this file must keep producing the schema they produced; a change is a new file.
-- The first derivation: jurisdiction over whole polygons, nearest border and post among the
-- 16 / 8 nearest in degrees.
CREATE OR REPLACE FUNCTION incident_derive() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    on_day date := NEW.occurred_at::date;
    path text[];
    near_code text;
    near_country text;
BEGIN
    SELECT array_agg(h.code ORDER BY h.rank), max(h.country)
      INTO path, NEW.country_code
      FROM (
        SELECT DISTINCT ON (j.level) j.code, j.country,
               array_position(ARRAY['country','province','district','commune'], j.level::text) AS rank
          FROM jurisdiction j
         WHERE ST_Covers(j.geom, NEW.geom)
         ORDER BY j.level,
                  (coalesce(j.valid_from, '-infinity'::date) <= on_day
                   AND on_day < coalesce(j.valid_to, 'infinity'::date)) DESC,
                  j.valid_from DESC NULLS LAST
      ) h;
    IF path IS NOT NULL THEN
        NEW.jurisdiction_path := path;
        NEW.province_code := (SELECT j.code FROM jurisdiction j
                               WHERE j.level = 'province' AND j.code = ANY(path) LIMIT 1);
        NEW.jurisdiction_method := 'contains';
    ELSE
        SELECT c.code, c.country INTO near_code, near_country
          FROM (SELECT j.code, j.country, j.geom FROM jurisdiction j
                 WHERE j.level = 'province'
                 ORDER BY j.geom <-> NEW.geom LIMIT 8) c
         WHERE ST_DWithin(c.geom::geography, NEW.geom::geography, 22224)
         ORDER BY ST_Distance(c.geom::geography, NEW.geom::geography)
         LIMIT 1;
        IF near_code IS NOT NULL THEN
            NEW.jurisdiction_path := ARRAY[near_country, near_code];
            NEW.country_code := near_country;
            NEW.province_code := near_code;
            NEW.jurisdiction_method := 'nearest';
        ELSE
            NEW.jurisdiction_path := NULL;
            NEW.country_code := NULL;
            NEW.province_code := NULL;
            NEW.jurisdiction_method := NULL;
        END IF;
    END IF;

    SELECT s.code, ST_Distance(c.geom::geography, NEW.geom::geography) / 1000.0
      INTO NEW.border_segment, NEW.border_distance_km
      FROM (SELECT p.segment_id, p.geom FROM border_segment_piece p
             ORDER BY p.geom <-> NEW.geom LIMIT 16) c
      JOIN border_segment s ON s.id = c.segment_id
     ORDER BY ST_Distance(c.geom::geography, NEW.geom::geography)
     LIMIT 1;

    SELECT c.id, ST_Distance(c.geom::geography, NEW.geom::geography) / 1000.0
      INTO NEW.nearest_post_id, NEW.nearest_post_km
      FROM (SELECT p.id, p.geom FROM border_post p ORDER BY p.geom <-> NEW.geom LIMIT 8) c
     ORDER BY ST_Distance(c.geom::geography, NEW.geom::geography)
     LIMIT 1;
    RETURN NEW;
END
$fn$;
