"""Vector tiles (Mapbox Vector Tile, made by ST_AsMVT in PostgreSQL) and their TileJSON."""
