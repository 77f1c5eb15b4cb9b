"""OGC API – Features under /ogc: Part 1 (Core, GeoJSON, HTML, OpenAPI 3.0) and Part 3
(CQL2 filtering)."""
