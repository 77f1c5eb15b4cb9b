-- The derived fields of an incident: its units (today's, and those in force when it occurred),
-- its place at sea, the nearest national border and the nearest border post.
--
-- One definition for every writer: the incident_derive trigger (one incident at a time) and
-- the bulk import (app/incidents/imports/derive.py: every distinct place of a file) call these
-- functions, and nothing else restates their rules or constants. Installed by migration 0012.
-- This file is frozen once a migration has loaded it: a change is a new file
-- (incident_derive_v7.sql …) loaded by a new migration, whose downgrade loads this one again.
--
-- v6 answers exactly what v5 answered; only the sea's search is cheaper (incident_sea): the
-- nearest land piece in degrees is measured first and the other candidates are measured only
-- when their bounding boxes allow them to be nearer; a country without units of a level (every
-- neighbour: only Vietnam's provinces and communes are in the data) is not searched for them,
-- where v5 walked the level's whole index looking for one.
--
-- Distances are geodesic (WGS 84 spheroid: PostGIS's ST_Distance on geography, whose lines
-- follow great circles between their vertices). Ties go to the lowest id or code, so the answer
-- never depends on the order in which rows happen to be read.
--
-- Two eras. Jurisdictions carry valid_from / valid_to (valid_to exclusive): the 63 provinces
-- until 2025-07-01, the 34 provinces and 3 321 communes from that day. An incident gets
-- today's units (province_code, commune_code) and the units in force on the day it occurred
-- (province_at_occurrence, commune_at_occurrence: NULL when no unit of that level was in force
-- then, e.g. a commune before 2025-07-01). Its jurisdiction_path lists every unit of every era
-- that holds it, so a filter or a key on a former province still means that province's area.

-- The calendar day of a moment in Vietnam: the validity dates of Vietnam's units are days of
-- Vietnam's calendar (midnight in Hà Nội), whatever the deployment's own time zone.
CREATE OR REPLACE FUNCTION incident_local_day(ts timestamptz)
RETURNS date
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
SELECT (ts AT TIME ZONE 'Asia/Ho_Chi_Minh')::date
$fn$;

-- Whether a unit valid from `valid_from` to `valid_to` (exclusive; NULL: unbounded) is in
-- force on `on_day`.
CREATE OR REPLACE FUNCTION incident_in_force(valid_from date, valid_to date, on_day date)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
SELECT coalesce(valid_from, '-infinity'::date) <= on_day
       AND on_day < coalesce(valid_to, 'infinity'::date)
$fn$;

-- The jurisdiction pieces (ST_Subdivide of jurisdiction, so each test reads at most 128
-- vertices) that cover the point.
CREATE OR REPLACE FUNCTION incident_covering(pt geometry)
RETURNS integer[]
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
SELECT ARRAY(SELECT p.id FROM jurisdiction_piece p WHERE ST_Covers(p.geom, pt) ORDER BY p.id)
$fn$;

-- The units of the pieces `piece_ids` (those covering a point, or those nearest to it at sea),
-- read in one pass: every code, widest level first, older units before newer, then by code;
-- today's country, province and commune; the province and commune in force on `on_day` (the
-- lowest code when several are). Today's unit of a level is the one in force today; when none
-- of that level is (a deployment that loaded no current set), the newest stands in. A unit in
-- force on `on_day` has no stand-in: none, no value. No row when there are no pieces.
CREATE OR REPLACE FUNCTION incident_units(piece_ids integer[], on_day date)
RETURNS TABLE (path text[], country text, province text, commune text,
               province_at_occurrence text, commune_at_occurrence text)
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
SELECT array_agg(u.code ORDER BY u.rank, u.valid_from NULLS FIRST, u.code),
       (array_agg(u.country ORDER BY u.level <> 'country', NOT u.today,
                  u.valid_from DESC NULLS LAST, u.code))[1],
       (array_agg(u.code ORDER BY NOT u.today, u.valid_from DESC NULLS LAST, u.code)
            FILTER (WHERE u.level = 'province'))[1],
       (array_agg(u.code ORDER BY NOT u.today, u.valid_from DESC NULLS LAST, u.code)
            FILTER (WHERE u.level = 'commune'))[1],
       (array_agg(u.code ORDER BY u.code) FILTER (WHERE u.level = 'province' AND u.then))[1],
       (array_agg(u.code ORDER BY u.code) FILTER (WHERE u.level = 'commune' AND u.then))[1]
  FROM (SELECT DISTINCT p.code, p.country, p.level::text AS level, p.valid_from,
               incident_in_force(p.valid_from, p.valid_to, incident_local_day(now())) AS today,
               incident_in_force(p.valid_from, p.valid_to, on_day) AS then,
               array_position(ARRAY['country','province','district','commune'], p.level::text)
                   AS rank
          FROM jurisdiction_piece p
         WHERE p.id = ANY(piece_ids)) u
HAVING count(*) > 0
$fn$;

-- Whether everything of `g` (a polygon piece, as geography: great-circle edges between its
-- vertices) is surely farther than `metres` from `pt` on the ground, from bounding boxes alone.
-- The piece lies within its lon/lat box widened towards the poles by the most a great-circle
-- edge as wide as the box can bulge (it reaches latitude atan(tan(top) / cos(width / 2)));
-- edges never leave the box's longitudes. No path on the ground is shorter than its change of
-- latitude times 110 574 m a degree, or its change of longitude times 111 320 m a degree times
-- the cosine of the highest latitude it can reach (1 % allowance for rounding and the
-- spheroid). Near a pole or the antimeridian the longitudes bound nothing.
CREATE OR REPLACE FUNCTION incident_surely_beyond(g geometry, pt geometry, metres float8)
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
DECLARE
    lat_m constant float8 := 110574;
    lon_m constant float8 := 111320;
    margin constant float8 := 1.01;
    box box2d := Box2D(g);
    x1 float8 := ST_XMin(box);
    x2 float8 := ST_XMax(box);
    y1 float8 := ST_YMin(box);
    y2 float8 := ST_YMax(box);
    x float8 := ST_X(pt);
    y float8 := ST_Y(pt);
    edge_top float8 := least(89.9, greatest(abs(y1), abs(y2)));
    wraps boolean := x2 - x1 >= 180 OR greatest(abs(x1), abs(x2), abs(x)) > 179;
    bulge float8 := 90 - edge_top;
    top float8;
BEGIN
    IF NOT wraps THEN
        bulge := degrees(atan(tan(radians(edge_top)) / cos(radians((x2 - x1) / 2)))) - edge_top;
    END IF;
    top := least(89.9, greatest(abs(y1), abs(y2), abs(y)) + bulge + metres / lat_m * margin);
    RETURN greatest(greatest(0, y1 - bulge - y, y - y2 - bulge) * lat_m,
                    CASE WHEN wraps THEN 0
                         ELSE greatest(0, x1 - x, x - x2) * lon_m * cos(radians(top)) END)
           > metres * margin;
END
$fn$;

-- The sea. A point that no jurisdiction covers (at sea, or in an estuary or river channel that
-- the generalised coastline leaves out) belongs to the country whose land is nearest, if that
-- land is within 24 nautical miles (44 448 m), and to that country's nearest unit of each
-- level and era within the same reach: the pieces returned stand in for the covering ones.
-- The distance to that land is `offshore_m`, measured from the coastline of the boundary data
-- (the legal baselines are not in the data), and gives the maritime band: the territorial sea
-- to 12 nautical miles (22 224 m), the contiguous zone to 24. Candidates: the 16 pieces of each
-- level nearest in degrees, skipping by bounding boxes those that cannot be within reach.
-- For the land, the nearest in degrees is measured first: a candidate whose box lies farther
-- than that cannot win (nor tie), and is not measured. The levels are today's two tiers,
-- province and commune (the district level is gone; none is in the data), each searched in its
-- own partial index (migration 0010), and only for a country that has units of the level (a
-- search for a unit that no piece has would walk the whole index; the index of jurisdiction on
-- level and country answers the question). Each candidate's distance is measured once (OFFSET
-- 0 keeps the planner from measuring it again in the sort). The units tile their country, so
-- the nearest of each lies as far as the land (1 % and 1 km allowed for the rounding of shared
-- edges): nothing farther is measured.
CREATE OR REPLACE FUNCTION incident_sea(pt geometry)
RETURNS TABLE (piece_ids integer[], offshore_m float8, maritime_zone text)
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
SELECT array_prepend(land.id, ARRAY(
           SELECT DISTINCT ON (d.level, d.valid_from, d.valid_to) d.id
             FROM (SELECT u.id, u.level, u.valid_from, u.valid_to, u.code,
                          ST_Distance(u.geom::geography, pt::geography) AS m
                     FROM ((SELECT p.id, p.level, p.valid_from, p.valid_to, p.code, p.geom
                              FROM jurisdiction_piece p
                             WHERE p.level = 'province' AND p.country = land.country
                               AND EXISTS (SELECT FROM jurisdiction j
                                            WHERE j.level = 'province'
                                              AND j.country = land.country)
                             ORDER BY p.geom <-> pt
                             LIMIT 16)
                           UNION ALL
                           (SELECT p.id, p.level, p.valid_from, p.valid_to, p.code, p.geom
                              FROM jurisdiction_piece p
                             WHERE p.level = 'commune' AND p.country = land.country
                               AND EXISTS (SELECT FROM jurisdiction j
                                            WHERE j.level = 'commune'
                                              AND j.country = land.country)
                             ORDER BY p.geom <-> pt
                             LIMIT 16)) u
                    WHERE NOT incident_surely_beyond(u.geom, pt, land.unit_reach_m)
                   OFFSET 0) d
            WHERE d.m <= land.unit_reach_m
            ORDER BY d.level, d.valid_from, d.valid_to, d.m, d.code)),
       land.m,
       CASE WHEN land.m <= r.territorial_m THEN 'territorial_sea' ELSE 'contiguous_zone' END
  FROM (SELECT 22224.0::float8 AS territorial_m, 44448.0::float8 AS contiguous_m) r
 CROSS JOIN LATERAL (
       SELECT p.id, ST_Distance(p.geom::geography, pt::geography) AS m
         FROM jurisdiction_piece p
        WHERE p.level = 'country'
        ORDER BY p.geom <-> pt
        LIMIT 1
       OFFSET 0) first
 CROSS JOIN LATERAL (
       SELECT c.id, c.country, c.m, least(r.contiguous_m, c.m * 1.01 + 1000) AS unit_reach_m
         FROM (SELECT p.id, p.country,
                      CASE WHEN p.id = first.id THEN first.m
                           ELSE ST_Distance(p.geom::geography, pt::geography) END AS m
                 FROM (SELECT p.id, p.country, p.geom
                         FROM jurisdiction_piece p
                        WHERE p.level = 'country'
                        ORDER BY p.geom <-> pt
                        LIMIT 16) p
                WHERE p.id = first.id
                   OR NOT incident_surely_beyond(p.geom, pt, least(r.contiguous_m, first.m))
               OFFSET 0) c
        WHERE c.m <= r.contiguous_m
        ORDER BY c.m, c.id
        LIMIT 1) land
$fn$;

-- Jurisdiction of a point on a day, given the pieces that cover it: their units ('contains'),
-- else those of the sea ('nearest', with the distance to land and the band); no row when
-- neither. (OFFSET 0: the sea's pieces are found once; inlined, the expression would be
-- evaluated again wherever incident_units reads it.)
CREATE OR REPLACE FUNCTION incident_jurisdiction(pt geometry, on_day date, covering integer[])
RETURNS TABLE (path text[], country text, province text, commune text,
               province_at_occurrence text, commune_at_occurrence text, method text,
               offshore_km float8, maritime_zone text)
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
SELECT u.*, 'contains', NULL::float8, NULL::text
  FROM incident_units(covering, on_day) u
 WHERE cardinality(covering) > 0
UNION ALL
SELECT u.*, 'nearest', s.offshore_m / 1000.0, s.maritime_zone
  FROM (SELECT * FROM incident_sea(pt) WHERE cardinality(covering) = 0 OFFSET 0) s
 CROSS JOIN LATERAL incident_units(s.piece_ids, on_day) u
$fn$;

-- Nearest border piece and nearest border post. The rule: the smallest distance on the spheroid
-- (ST_Distance on geography), ties to the lowest id. The search works on a circle: for a
-- centre and a radius, the candidates are every piece that can be the nearest to some point of
-- the circle, with their distances from the centre; for one point among them, only the
-- candidates that can beat the first are measured. The trigger asks for a circle of radius 0
-- around the incident; the bulk import shares one circle among the points of a grid cell. Why
-- no candidate is missed: the spheroid distance is within 0.5 % of the geodesic one, which
-- obeys the triangle inequality; the winner W of a point p within r of the centre c satisfies
-- d(c, W) <= d(c, p) + d(p, W) <= r + d(p, P) <= 2r + d(c, P) for any piece P, in particular
-- the one nearest to c on the sphere (each step 1 % wider, plus 10 m, for the spheroid and
-- rounding).

-- How far from a circle's centre the nearest piece of any point of the circle can be, given
-- the distance from the centre to one piece (`some_m`) and the radius.
CREATE OR REPLACE FUNCTION incident_reach_m(some_m float8, radius_m float8)
RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
SELECT (some_m + 2 * radius_m) * 1.011 + 10
$fn$;

-- A distance on the sphere that surely covers `spheroid_m` on the spheroid (and rounding).
CREATE OR REPLACE FUNCTION incident_on_sphere_m(spheroid_m float8)
RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
SELECT spheroid_m * 1.01 + 10
$fn$;

-- The least a candidate `candidate_m` from the centre can be from a point `from_centre_m` from
-- the centre.
CREATE OR REPLACE FUNCTION incident_lower_bound_m(candidate_m float8, from_centre_m float8)
RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
SELECT candidate_m / 1.005 - from_centre_m - 1
$fn$;

-- The circle of a grid cell of `deg` degrees (index cx, cy): its centre and a radius that
-- reaches its corners.
CREATE OR REPLACE FUNCTION incident_cell_circle(deg float8, cx integer, cy integer)
RETURNS TABLE (centre geography, radius_m float8)
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
SELECT c.g, incident_on_sphere_m(max(ST_Distance(c.g, k.g)))
  FROM (SELECT ST_SetSRID(ST_MakePoint(least(180, greatest(-180, (cx + 0.5) * deg)),
                                       least(90, greatest(-90, (cy + 0.5) * deg))),
                          4326)::geography AS g) c
 CROSS JOIN LATERAL (
       SELECT ST_SetSRID(ST_MakePoint(least(180, greatest(-180, (cx + v.dx) * deg)),
                                      least(90, greatest(-90, (cy + v.dy) * deg))),
                         4326)::geography AS g
         FROM (VALUES (0, 0), (0, 1), (1, 0), (1, 1)) v(dx, dy)) k
 GROUP BY c.g
$fn$;

-- The border pieces that can be the nearest to a point of the circle, by distance from the
-- centre (then id), with those distances.
CREATE OR REPLACE FUNCTION incident_border_candidates(centre geography, radius_m float8)
RETURNS TABLE (ids integer[], distances_m float8[])
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
SELECT array_agg(w.id ORDER BY w.m, w.id), array_agg(w.m ORDER BY w.m, w.id)
  FROM (SELECT incident_reach_m((SELECT ST_Distance(q.geom::geography, centre)
                                   FROM border_segment_piece q
                                  ORDER BY q.geom::geography <-> centre
                                  LIMIT 1), radius_m) AS m) reach
 CROSS JOIN LATERAL (
       SELECT p.id, ST_Distance(p.geom::geography, centre) AS m
         FROM border_segment_piece p
        WHERE ST_DWithin(p.geom::geography, centre, incident_on_sphere_m(reach.m), false)
       OFFSET 0) w
 WHERE w.m <= reach.m
$fn$;

-- The nearest of the candidates of a circle to `pt`, `from_centre_m` from its centre (NULL:
-- `pt` is the centre, the candidates' distances are its own and the first one wins): the
-- segment and the distance in km. (OFFSET 0: a distance is computed once, not again in every
-- comparison that uses it.)
CREATE OR REPLACE FUNCTION incident_border_pick(pt geography, from_centre_m float8,
                                                ids integer[], distances_m float8[])
RETURNS TABLE (segment text, distance_km float8)
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
SELECT s.code, w.m / 1000.0
  FROM (SELECT b.id, b.m
          FROM (SELECT CASE WHEN from_centre_m IS NULL THEN distances_m[1]
                             ELSE ST_Distance(p.geom::geography, pt) END AS m
                  FROM border_segment_piece p WHERE p.id = ids[1]
                OFFSET 0) first
         CROSS JOIN LATERAL (
               SELECT q.id, CASE WHEN q.i = 1 THEN first.m
                                 ELSE (SELECT ST_Distance(p.geom::geography, pt)
                                         FROM border_segment_piece p WHERE p.id = q.id) END AS m
                 FROM unnest(ids, distances_m) WITH ORDINALITY AS q(id, cm, i)
                WHERE q.i = 1 OR incident_lower_bound_m(q.cm, from_centre_m) <= first.m) b
         ORDER BY b.m, b.id
         LIMIT 1) w
  JOIN border_segment_piece bp ON bp.id = w.id
  JOIN border_segment s ON s.id = bp.segment_id
$fn$;

-- The same for border posts.
CREATE OR REPLACE FUNCTION incident_post_candidates(centre geography, radius_m float8)
RETURNS TABLE (ids integer[], distances_m float8[])
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
SELECT array_agg(w.id ORDER BY w.m, w.id), array_agg(w.m ORDER BY w.m, w.id)
  FROM (SELECT incident_reach_m((SELECT ST_Distance(q.geom::geography, centre)
                                   FROM border_post q
                                  ORDER BY q.geom::geography <-> centre
                                  LIMIT 1), radius_m) AS m) reach
 CROSS JOIN LATERAL (
       SELECT p.id, ST_Distance(p.geom::geography, centre) AS m
         FROM border_post p
        WHERE ST_DWithin(p.geom::geography, centre, incident_on_sphere_m(reach.m), false)
       OFFSET 0) w
 WHERE w.m <= reach.m
$fn$;

CREATE OR REPLACE FUNCTION incident_post_pick(pt geography, from_centre_m float8,
                                              ids integer[], distances_m float8[])
RETURNS TABLE (post_id integer, distance_km float8)
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
SELECT b.id, b.m / 1000.0
  FROM (SELECT CASE WHEN from_centre_m IS NULL THEN distances_m[1]
                     ELSE ST_Distance(p.geom::geography, pt) END AS m
          FROM border_post p WHERE p.id = ids[1]
        OFFSET 0) first
 CROSS JOIN LATERAL (
       SELECT q.id, CASE WHEN q.i = 1 THEN first.m
                         ELSE (SELECT ST_Distance(p.geom::geography, pt)
                                 FROM border_post p WHERE p.id = q.id) END AS m
         FROM unnest(ids, distances_m) WITH ORDINALITY AS q(id, cm, i)
        WHERE q.i = 1 OR incident_lower_bound_m(q.cm, from_centre_m) <= first.m) b
 ORDER BY b.m, b.id
 LIMIT 1
$fn$;

-- Every derived field of an incident at `pt` on `on_day` (its day in Vietnam: see
-- incident_local_day), given the jurisdiction pieces that cover it and the candidates of a
-- circle around `centre` that holds it (see above; NULL: the circle of radius 0 around `pt`):
-- always one row, NULLs where nothing applies. The columns are the incident's.
CREATE OR REPLACE FUNCTION incident_derived_near(pt geometry, on_day date, covering integer[],
                                                 centre geography,
                                                 piece_ids integer[], piece_m float8[],
                                                 post_ids integer[], post_m float8[])
RETURNS TABLE (country_code text, province_code text, commune_code text,
               province_at_occurrence text, commune_at_occurrence text,
               jurisdiction_path text[], jurisdiction_method text, offshore_km float8,
               maritime_zone text, border_segment text, border_distance_km float8,
               nearest_post_id integer, nearest_post_km float8)
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
SELECT j.country, j.province, j.commune, j.province_at_occurrence, j.commune_at_occurrence,
       j.path, j.method, j.offshore_km, j.maritime_zone, b.segment, b.distance_km, p.post_id,
       p.distance_km
  FROM (SELECT ST_Distance(pt::geography, centre) AS m OFFSET 0) c
  LEFT JOIN LATERAL incident_jurisdiction(pt, on_day, covering) j ON true
  LEFT JOIN LATERAL incident_border_pick(pt::geography, c.m, piece_ids, piece_m) b ON true
  LEFT JOIN LATERAL incident_post_pick(pt::geography, c.m, post_ids, post_m) p ON true
$fn$;

-- The same for one incident by itself: the circle of radius 0 around it, whose candidates come
-- with their exact distances. (OFFSET 0: the covering pieces are looked up once, not wherever
-- the inlined functions read them.)
CREATE OR REPLACE FUNCTION incident_derived(pt geometry, on_day date)
RETURNS TABLE (country_code text, province_code text, commune_code text,
               province_at_occurrence text, commune_at_occurrence text,
               jurisdiction_path text[], jurisdiction_method text, offshore_km float8,
               maritime_zone text, border_segment text, border_distance_km float8,
               nearest_post_id integer, nearest_post_km float8)
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
SELECT d.*
  FROM incident_border_candidates(pt::geography, 0) b
 CROSS JOIN incident_post_candidates(pt::geography, 0) p
 CROSS JOIN (SELECT incident_covering(pt) AS ids OFFSET 0) cv
 CROSS JOIN LATERAL incident_derived_near(pt, on_day, cv.ids, NULL, b.ids, b.distances_m,
                                          p.ids, p.distances_m) d
$fn$;

-- The trigger: on insert, and when the location or the time changes. Not called during a
-- set-based import (its WHEN checks borderwatch.bulk), which derives the same fields with
-- incident_derived_near once per distinct place, sharing circles among the points of a cell.
-- Its one statement is planned once per session (a generic plan): the service's connections
-- plan every statement afresh (plan_cache_mode = force_custom_plan, app/db.py), and planning
-- the functions above, inlined, cost ~2 ms a row.
CREATE OR REPLACE FUNCTION incident_derive() RETURNS trigger LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan AS $fn$
BEGIN
    SELECT d.country_code, d.province_code, d.commune_code, d.province_at_occurrence,
           d.commune_at_occurrence, d.jurisdiction_path, d.jurisdiction_method, d.offshore_km,
           d.maritime_zone, d.border_segment, d.border_distance_km, d.nearest_post_id,
           d.nearest_post_km
      INTO NEW.country_code, NEW.province_code, NEW.commune_code, NEW.province_at_occurrence,
           NEW.commune_at_occurrence, NEW.jurisdiction_path, NEW.jurisdiction_method,
           NEW.offshore_km, NEW.maritime_zone, NEW.border_segment, NEW.border_distance_km,
           NEW.nearest_post_id, NEW.nearest_post_km
      FROM incident_derived(NEW.geom, incident_local_day(NEW.occurred_at)) d;
    RETURN NEW;
END
$fn$;
