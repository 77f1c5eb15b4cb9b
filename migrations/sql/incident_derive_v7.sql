-- Nearest border post with validity (installed by migration 0023): a post counts as an
-- incident's nearest post only when it is a home post (country 'VNM') in force on the day the
-- incident occurred (valid_from <= day < valid_to, Vietnam's calendar). A closed post stays the
-- nearest post of the incidents that occurred before its valid_to and stops being one after.
--
-- This file holds only what changes from v6 (the other functions stay v6's); the downgrade of
-- 0023 loads v6 again, which restores every function to v6's definition. Frozen once loaded:
-- a change is a new file.
--
-- Why the bulk import's shared candidates stay correct: incident_post_candidates (v6, unchanged,
-- every post) gives, for a circle, every post that can be the nearest to some point of it. When
-- every one of them is eligible on the incident's day, the nearest of all posts is the nearest
-- eligible post and is among them: the v6 pick answers. Otherwise (a closed, future or foreign
-- post among them: rare) the point is searched by itself among the eligible posts.

-- Whether a post counts for "nearest post" on a day.
CREATE OR REPLACE FUNCTION incident_post_eligible(country text, valid_from date, valid_to date,
                                                  on_day date)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
SELECT country = 'VNM' AND incident_in_force(valid_from, valid_to, on_day)
$fn$;

-- incident_post_candidates among the posts eligible on `on_day`.
CREATE OR REPLACE FUNCTION incident_post_candidates_on(centre geography, radius_m float8,
                                                       on_day date)
RETURNS TABLE (ids integer[], distances_m float8[])
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
SELECT array_agg(w.id ORDER BY w.m, w.id), array_agg(w.m ORDER BY w.m, w.id)
  FROM (SELECT incident_reach_m((SELECT ST_Distance(q.geom::geography, centre)
                                   FROM border_post q
                                  WHERE incident_post_eligible(q.country, q.valid_from,
                                                               q.valid_to, on_day)
                                  ORDER BY q.geom::geography <-> centre
                                  LIMIT 1), radius_m) AS m) reach
 CROSS JOIN LATERAL (
       SELECT p.id, ST_Distance(p.geom::geography, centre) AS m
         FROM border_post p
        WHERE ST_DWithin(p.geom::geography, centre, incident_on_sphere_m(reach.m), false)
          AND incident_post_eligible(p.country, p.valid_from, p.valid_to, on_day)
       OFFSET 0) w
 WHERE w.m <= reach.m
$fn$;

-- Whether every candidate post is eligible on `on_day`.
CREATE OR REPLACE FUNCTION incident_posts_all_eligible(post_ids integer[], on_day date)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
SELECT NOT EXISTS (SELECT 1 FROM border_post q
                    WHERE q.id = ANY(post_ids)
                      AND NOT incident_post_eligible(q.country, q.valid_from, q.valid_to,
                                                     on_day))
$fn$;

-- v6's incident_derived_near, the post picked among the eligible posts (see above).
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
  FROM (SELECT ST_Distance(pt::geography, centre) AS m,
               incident_posts_all_eligible(post_ids, on_day) AS shared OFFSET 0) c
  LEFT JOIN LATERAL incident_jurisdiction(pt, on_day, covering) j ON true
  LEFT JOIN LATERAL incident_border_pick(pt::geography, c.m, piece_ids, piece_m) b ON true
  LEFT JOIN LATERAL (
        SELECT s.post_id, s.distance_km
          FROM incident_post_pick(pt::geography, c.m, post_ids, post_m) s
         WHERE c.shared
        UNION ALL
        SELECT o.post_id, o.distance_km
          FROM incident_post_candidates_on(pt::geography, 0, on_day) k
         CROSS JOIN LATERAL incident_post_pick(pt::geography, NULL, k.ids, k.distances_m) o
         WHERE NOT c.shared) p ON true
$fn$;

-- v6's incident_derived (the trigger's): the post candidates among the eligible posts.
CREATE OR REPLACE FUNCTION incident_derived(pt geometry, on_day date)
RETURNS TABLE (country_code text, province_code text, commune_code text,
               province_at_occurrence text, commune_at_occurrence text,
               jurisdiction_path text[], jurisdiction_method text, offshore_km float8,
               maritime_zone text, border_segment text, border_distance_km float8,
               nearest_post_id integer, nearest_post_km float8)
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
SELECT d.*
  FROM incident_border_candidates(pt::geography, 0) b
 CROSS JOIN incident_post_candidates_on(pt::geography, 0, on_day) p
 CROSS JOIN (SELECT incident_covering(pt) AS ids OFFSET 0) cv
 CROSS JOIN LATERAL incident_derived_near(pt, on_day, cv.ids, NULL, b.ids, b.distances_m,
                                          p.ids, p.distances_m) d
$fn$;
