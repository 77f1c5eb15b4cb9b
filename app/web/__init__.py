"""The map dashboard: static files (app/web/static) and MapLibre GL JS from node_modules."""
