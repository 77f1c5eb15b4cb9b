"""Bulk incident import: CSV (plain or ACLED-style) and GeoJSON (docs/import.md).

Every row is checked against the incident rules (rows.py, with the types of rules.py) in a
worker thread, a chunk at a time, and the valid rows are COPYed into a temporary staging table
(staging.py); nothing touches `incident` before the whole file has been read, and in
all-or-nothing mode one invalid row rejects the file. Each distinct place (point and day) is
derived by the database function the incident_derive trigger calls, on a second connection
while the file is still being read (derive.py), and the rows are upserted on
(source, source_id) in batches (write.py), in one transaction (run.py). `first_load` builds
the secondary indexes after the load instead (first_load.py).

Readers: csv_file.py (with acled.py for ACLED exports) and geojson_file.py.
"""

from app.incidents.imports.csv_file import MAX_CSV_COLUMNS, MAX_HEADER_CHARS
from app.incidents.imports.formats import FORMATS, MEDIA_TYPES, Format, guess_format
from app.incidents.imports.report import MAX_REPORTED_ERRORS, MODES, ImportReport, Mode
from app.incidents.imports.run import import_file

__all__ = [
    "FORMATS",
    "MAX_CSV_COLUMNS",
    "MAX_HEADER_CHARS",
    "MAX_REPORTED_ERRORS",
    "MEDIA_TYPES",
    "MODES",
    "Format",
    "ImportReport",
    "Mode",
    "guess_format",
    "import_file",
]
