-- incident_derive(), as migration 0002 (incidents API) installed it. Frozen: the migrations that load
-- this file must keep producing the schema they produced; a change is a new file.
-- Over the subdivided jurisdiction pieces; nearest border and post by the geography
-- nearest-neighbour search, every candidate within 1 % measured on the spheroid; skipped when
-- borderwatch.bulk = 'on'.
CREATE OR REPLACE FUNCTION incident_derive() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    on_day date := NEW.occurred_at::date;
    path text[];
    near_code text;
    near_country text;
    pt geography := NEW.geom::geography;
    near_m float8;
BEGIN
    IF current_setting('borderwatch.bulk', true) = 'on' THEN
        RETURN NEW;
    END IF;
    SELECT array_agg(h.code ORDER BY h.rank), max(h.country)
      INTO path, NEW.country_code
      FROM (
        SELECT DISTINCT ON (p.level) p.code, p.country,
               array_position(ARRAY['country','province','district','commune'], p.level::text)
                   AS rank
          FROM jurisdiction_piece p
         WHERE ST_Covers(p.geom, NEW.geom)
         ORDER BY p.level,
                  (coalesce(p.valid_from, '-infinity'::date) <= on_day
                   AND on_day < coalesce(p.valid_to, 'infinity'::date)) DESC,
                  p.valid_from DESC NULLS LAST
      ) h;
    IF path IS NOT NULL THEN
        NEW.jurisdiction_path := path;
        NEW.province_code := (SELECT j.code FROM jurisdiction j
                               WHERE j.level = 'province' AND j.code = ANY(path) LIMIT 1);
        NEW.jurisdiction_method := 'contains';
    ELSE
        SELECT c.code, c.country INTO near_code, near_country
          FROM (SELECT p.code, p.country, p.geom FROM jurisdiction_piece p
                 WHERE p.level = 'province'
                 ORDER BY p.geom <-> NEW.geom LIMIT 16) c
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

    -- Nearest border and post: the sphere-distance KNN (geography GiST index) finds the
    -- nearest candidate; every candidate within 1 % of it is then measured on the spheroid.
    near_m := (SELECT p.geom::geography <-> pt FROM border_segment_piece p
                ORDER BY p.geom::geography <-> pt LIMIT 1);
    SELECT s.code, ST_Distance(p.geom::geography, pt) / 1000.0
      INTO NEW.border_segment, NEW.border_distance_km
      FROM border_segment_piece p JOIN border_segment s ON s.id = p.segment_id
     WHERE ST_DWithin(p.geom::geography, pt, near_m * 1.01 + 10, false)
     ORDER BY ST_Distance(p.geom::geography, pt)
     LIMIT 1;

    near_m := (SELECT p.geom::geography <-> pt FROM border_post p
                ORDER BY p.geom::geography <-> pt LIMIT 1);
    SELECT p.id, ST_Distance(p.geom::geography, pt) / 1000.0
      INTO NEW.nearest_post_id, NEW.nearest_post_km
      FROM border_post p
     WHERE ST_DWithin(p.geom::geography, pt, near_m * 1.01 + 10, false)
     ORDER BY ST_Distance(p.geom::geography, pt), p.id
     LIMIT 1;
    RETURN NEW;
END
$fn$;
