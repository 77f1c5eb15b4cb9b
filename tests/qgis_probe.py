"""QGIS as a GIS officer uses it, headless: run by the SYSTEM Python (python3-qgis; the project's
venv has no `qgis`) from tests/test_qgis.py, never collected by pytest.

Reads one JSON job from stdin (the key travels there, never in argv, a URL or the environment):

    {"base": "http://127.0.0.1:8000", "key": "bw_…", "auth": true,
     "layers": [{"collection": "incidents", "page_size": 20, "subset": "severity >= 4"}, …],
     "tiles": {"template": "http://…/{z}/{x}/{y}.mvt?v=…", "zmin": 0, "zmax": 16,
               "extent": [w, s, e, n], "layer": "incidents", "image": "/tmp/…/tiles.png"}}

and prints one JSON report on stdout. QGIS gets a profile, settings, caches and an
authentication database of its own in a temporary folder (never the user's), a master password
set here, and one Basic authentication configuration (any user name, the key as the password)
that every layer names with `authcfg` (unless `auth` is false: then no configuration is made and
no layer names one). Each layer is an OAPIF (OGC API – Features) layer; a `subset` is applied
afterwards with setSubsetString, as the layer's "Filter…" dialog does. The vector tiles are an
XYZ vector tile layer rendered offscreen to an image (saved to `image`), whose painted pixels
are counted.

A fresh folder per run matters: QGIS keeps HTTP responses in a disk cache (Qt's, under the
cache folder) and 3.22 reuses a cached tile for a request without the key, whatever the
response's `Vary: Authorization` says.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

# Everything QGIS and Qt write (profile, settings, caches, the auth database) goes under one
# temporary folder, set before Qt starts: never the user's own profile or ~/.config, ~/.cache.
WORK = Path(tempfile.mkdtemp(prefix="bw-qgis-"))
for _var, _sub in (("XDG_CONFIG_HOME", "config"), ("XDG_CACHE_HOME", "cache"),
                   ("XDG_DATA_HOME", "data"), ("XDG_RUNTIME_DIR", "runtime"),
                   ("QGIS_AUTH_DB_DIR_PATH", "auth")):  # fmt: skip
    (WORK / _sub).mkdir(mode=0o700)
    os.environ[_var] = str(WORK / _sub)
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (  # noqa: E402  (Qt reads the environment when qgis is imported)
    Qgis,
    QgsApplication,
    QgsAuthMethodConfig,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsDataSourceUri,
    QgsFeatureRequest,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsMarkerSymbol,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
    QgsVectorTileBasicRenderer,
    QgsVectorTileBasicRendererStyle,
    QgsVectorTileLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QCoreApplication, QSize  # noqa: E402
from qgis.PyQt.QtGui import QColor  # noqa: E402

MASTER_PASSWORD = "borderwatch-probe"  # protects the throw-away auth database only
USER_NAME = "qgis"  # any user name: the server reads the key from the password
IMAGE_PX = 512
MARKER_RGB = (255, 0, 0)


def start() -> Any:
    """A QgsApplication without GUI whose profile is a folder under WORK."""
    # QGIS's own settings file names (QGIS/QGIS3.ini, under XDG_CONFIG_HOME)
    QCoreApplication.setOrganizationName("QGIS")
    QCoreApplication.setApplicationName("QGIS3")
    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False, str(WORK / "profile"))
    app.initQgis()
    return app


def store_basic(key: str) -> str:
    """A Basic authentication configuration (the key as the password); returns its id."""
    manager = QgsApplication.authManager()
    if not manager.setMasterPassword(MASTER_PASSWORD, True):
        raise SystemExit("could not set the master password of the temporary auth database")
    config = QgsAuthMethodConfig("Basic")
    config.setName("Borderwatch")
    config.setConfig("username", USER_NAME)
    config.setConfig("password", key)
    stored, config = manager.storeAuthenticationConfig(config)
    if not stored or not config.id():
        raise SystemExit("could not store the Basic authentication configuration")
    return str(config.id())


def oapif_uri(base: str, collection: str, page_size: int, authcfg: str | None) -> str:
    """An OAPIF data source URI (QGIS 3.22's WFS/OAPIF provider keys)."""
    uri = QgsDataSourceUri()
    uri.setParam("url", f"{base}/ogc")
    uri.setParam("typename", collection)
    uri.setParam("pagingEnabled", "true")
    uri.setParam("pageSize", str(page_size))
    if authcfg:
        uri.setAuthConfigId(authcfg)
    return str(uri.uri(False))


def load_layer(job: dict[str, Any], layer: dict[str, Any], authcfg: str | None) -> dict[str, Any]:
    """Load one collection, apply its subset, count its features two ways."""
    uri = oapif_uri(job["base"], layer["collection"], int(layer["page_size"]), authcfg)
    vl = QgsVectorLayer(uri, layer["collection"], "OAPIF")
    out: dict[str, Any] = {
        "collection": layer["collection"],
        "subset": layer.get("subset"),
        "page_size": layer["page_size"],
        "valid": bool(vl.isValid()),
    }
    out["source_has_key"] = job["key"] in vl.source()
    if not vl.isValid():
        # why: the server's log and the report's `messages` (QgsMapLayer.error().summary()
        # crashes 3.22 here)
        return out
    if layer.get("subset") and not vl.setSubsetString(layer["subset"]):
        out["error"] = f"subset refused: {layer['subset']}"
        return out
    fields = [f.name() for f in vl.fields()]
    out["fields"] = fields
    out["field_types"] = {f.name(): f.typeName() for f in vl.fields()}
    out["geometry"] = QgsWkbTypes.displayString(vl.wkbType())
    # what the layer reports (the attribute table's and the layer panel's count) ...
    out["feature_count"] = int(vl.featureCount())
    # ... and the features QGIS actually downloads, page after page
    request = QgsFeatureRequest()
    ids = []
    iterated = 0
    id_at = fields.index("id") if "id" in fields else -1
    for feature in vl.getFeatures(request):
        iterated += 1
        if id_at >= 0:
            ids.append(str(feature.attributes()[id_at]))
    out["iterated"] = iterated
    out["ids"] = sorted(ids) if id_at >= 0 else None
    return out


def render_tiles(job: dict[str, Any], authcfg: str | None) -> dict[str, Any]:
    """An XYZ vector tile layer over the tile template, drawn offscreen; painted pixels."""
    tiles: dict[str, Any] = job["tiles"]
    uri = QgsDataSourceUri()
    uri.setParam("type", "xyz")
    uri.setParam("url", tiles["template"])
    uri.setParam("zmin", str(tiles["zmin"]))
    uri.setParam("zmax", str(tiles["zmax"]))
    if authcfg:
        uri.setAuthConfigId(authcfg)
    encoded = bytes(uri.encodedUri()).decode()
    vtl = QgsVectorTileLayer(encoded, "incident tiles")
    out: dict[str, Any] = {
        "valid": bool(vtl.isValid()),
        "source_has_key": job["key"] in vtl.source(),
    }
    if not vtl.isValid():
        return out
    # one style: every point feature of the tiles' layer as a red disc
    style = QgsVectorTileBasicRendererStyle("points", tiles["layer"], QgsWkbTypes.PointGeometry)
    style.setSymbol(
        QgsMarkerSymbol.createSimple(
            {"name": "circle", "color": ",".join(map(str, MARKER_RGB)), "size": "3",
             "outline_style": "no"}
        )
    )  # fmt: skip
    renderer = QgsVectorTileBasicRenderer()
    renderer.setStyles([style])
    vtl.setRenderer(renderer)
    mercator = QgsCoordinateReferenceSystem("EPSG:3857")
    to_mercator = QgsCoordinateTransform(
        QgsCoordinateReferenceSystem("EPSG:4326"), mercator, QgsProject.instance()
    )
    settings = QgsMapSettings()
    settings.setLayers([vtl])
    settings.setDestinationCrs(mercator)
    settings.setOutputSize(QSize(IMAGE_PX, IMAGE_PX))
    settings.setBackgroundColor(QColor(255, 255, 255, 0))
    settings.setExtent(to_mercator.transformBoundingBox(QgsRectangle(*tiles["extent"])))
    render = QgsMapRendererSequentialJob(settings)
    render.start()
    render.waitForFinished()
    image = render.renderedImage()
    if tiles.get("image"):  # kept for whoever reads a failure
        image.save(tiles["image"])
    painted = 0
    for y in range(image.height()):
        for x in range(image.width()):
            c = image.pixelColor(x, y)
            if c.alpha() > 0 and c.red() > 200 and c.green() < 80 and c.blue() < 80:
                painted += 1
    out["painted_px"] = painted
    out["errors"] = [f"{e.layerID}: {e.message}" for e in render.errors()]
    out["zoom_range"] = [int(vtl.sourceMinZoom()), int(vtl.sourceMaxZoom())]
    return out


def main() -> None:
    """Run the job read from stdin and print the report."""
    job: dict[str, Any] = json.load(sys.stdin)
    messages: list[str] = []
    try:
        app = start()
        QgsApplication.messageLog().messageReceived.connect(
            lambda message, tag, _level: messages.append(f"{tag}: {message}")
        )
        authcfg = store_basic(job["key"]) if job.get("auth", True) else None
        report: dict[str, Any] = {
            "qgis": str(Qgis.QGIS_VERSION),
            "qgis_version_int": int(Qgis.QGIS_VERSION_INT),
            "authcfg": authcfg is not None,
            "layers": [load_layer(job, layer, authcfg) for layer in job.get("layers", [])],
        }
        if job.get("tiles"):
            report["tiles"] = render_tiles(job, authcfg)
        report["messages"] = [m for m in messages if job["key"] not in m]
        app.exitQgis()
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
