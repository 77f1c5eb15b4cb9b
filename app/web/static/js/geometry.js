// Geometry on GeoJSON coordinates (longitude, latitude), with no map needed: where labels and
// badges go, the nearby tool's circle, a feature's bounds.

/** The middle vertex of a (multi)line: where its count badge goes. */
export function midPoint(geometry) {
  const lines = geometry.type === "LineString" ? [geometry.coordinates] : geometry.coordinates;
  const longest = lines.reduce((a, b) => (b.length > a.length ? b : a), []);
  return longest.length ? longest[Math.floor(longest.length / 2)] : null;
}

/** A geodesic circle (spherical Earth, 96 vertices) as a GeoJSON polygon. */
export function circlePolygon(lon, lat, radiusM) {
  const R = 6371008.8;
  const d = radiusM / R;
  const φ1 = (lat * Math.PI) / 180;
  const λ1 = (lon * Math.PI) / 180;
  const ring = [];
  for (let i = 0; i <= 96; i += 1) {
    const θ = (2 * Math.PI * i) / 96;
    const φ2 = Math.asin(Math.sin(φ1) * Math.cos(d) + Math.cos(φ1) * Math.sin(d) * Math.cos(θ));
    const λ2 = λ1 + Math.atan2(Math.sin(θ) * Math.sin(d) * Math.cos(φ1),
      Math.cos(d) - Math.sin(φ1) * Math.sin(φ2));
    ring.push([(λ2 * 180) / Math.PI, (φ2 * 180) / Math.PI]);
  }
  return { type: "Feature", properties: {}, geometry: { type: "Polygon", coordinates: [ring] } };
}

/** Area-weighted centroid of the largest outer ring: where a province's name goes. */
export function labelPoint(geometry) {
  const polys = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
  let best = null;
  for (const poly of polys) {
    const ring = poly[0];
    let a = 0; let cx = 0; let cy = 0;
    for (let i = 0; i < ring.length - 1; i += 1) {
      const [x1, y1] = ring[i];
      const [x2, y2] = ring[i + 1];
      const f = x1 * y2 - x2 * y1;
      a += f; cx += (x1 + x2) * f; cy += (y1 + y2) * f;
    }
    if (a !== 0 && (!best || Math.abs(a) > best.area)) {
      best = { area: Math.abs(a), point: [cx / (3 * a), cy / (3 * a)] };
    }
  }
  return best ? best.point : null;
}

/** [[west, south], [east, north]] of any geometry's coordinates. */
export function geometryBounds(geometry) {
  let [w, s, e, n] = [180, 90, -180, -90];
  const walk = (c) => {
    if (typeof c[0] === "number") {
      w = Math.min(w, c[0]); e = Math.max(e, c[0]); s = Math.min(s, c[1]); n = Math.max(n, c[1]);
    } else c.forEach(walk);
  };
  walk(geometry.coordinates);
  return [[w, s], [e, n]];
}
