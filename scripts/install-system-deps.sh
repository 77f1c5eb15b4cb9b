#!/usr/bin/env bash
# Installs the system packages Borderwatch needs, only when they are missing:
# PostgreSQL server + PostGIS (skipped when DATABASE_URL points at an external server),
# GDAL's tools, Node.js + npm (the dashboard's MapLibre GL JS), Chromium (browser tests),
# QGIS's Python bindings and data providers (the QGIS client test) and nginx (the tile cache
# test).
# Debian/Ubuntu; runs apt-get as root, or through sudo.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else SUDO=""; fi
fi

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

pg_bindir() {
  local d
  if command -v pg_config >/dev/null 2>&1; then
    d="$(pg_config --bindir)"
    if [ -x "$d/initdb" ]; then echo "$d"; return; fi
  fi
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; fi
}

if ! command -v python3 >/dev/null 2>&1 || ! python3 -c "import venv, ensurepip" 2>/dev/null; then
  echo "installing python3-venv"
  apt_install python3 python3-venv python3-pip
fi

# GDAL's command-line tools: the OGC API – Features client tests run ogrinfo / ogr2ogr.
if ! command -v ogr2ogr >/dev/null 2>&1; then
  echo "installing gdal-bin"
  apt_install gdal-bin
fi

# openssl: tests/test_webhooks.py checks a delivery's signature with the command that
# docs/webhooks.md gives receivers.
if ! command -v openssl >/dev/null 2>&1; then
  echo "installing openssl"
  apt_install openssl
fi

# nginx: tests/test_proxy_cache.py and bench/bench_proxy.py run the compose file's tile cache
# (docker/nginx/) with it, as this user, on 127.0.0.1; Debian's package has auth_request. Where
# systemd runs, the package also starts its default site on port 80 (`systemctl disable --now
# nginx` if that is unwanted); in containers without an init system it does not.
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "installing nginx"
  apt_install nginx
fi

# Node.js + npm: `make setup` installs the dashboard's front-end packages (MapLibre GL JS).
if ! command -v npm >/dev/null 2>&1; then
  echo "installing nodejs and npm"
  apt_install nodejs npm
fi

# Chromium: the dashboard's browser tests drive the system browser through Playwright
# (Playwright never downloads one of its own here).
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  echo "installing chromium"
  apt_install chromium
fi

# QGIS (PyQGIS + its data providers: OAPIF, vector tiles, Basic authentication), headless:
# tests/test_qgis.py runs QGIS as a GIS officer would, in the system Python (/usr/bin/python3;
# the bindings are not installable in the venv). Debian 12 has QGIS 3.22; ~170 packages, under
# a minute.
qgis_python=/usr/bin/python3
if ! QT_QPA_PLATFORM=offscreen "$qgis_python" -c "import qgis.core" >/dev/null 2>&1 \
    || ! dpkg-query -W -f='${Status}' qgis-providers 2>/dev/null | grep -q "ok installed"; then
  echo "installing python3-qgis and qgis-providers"
  apt_install python3-qgis qgis-providers
  if ! QT_QPA_PLATFORM=offscreen "$qgis_python" -c "import qgis.core" >/dev/null 2>&1; then
    echo "$qgis_python cannot import qgis.core after installing python3-qgis" >&2
    exit 1
  fi
fi

# The printable briefing (app/reports/): WeasyPrint needs Pango; Noto Sans carries every
# Vietnamese diacritic (DejaVu Sans is the fallback); poppler-utils' pdftotext/pdftoppm read the
# PDFs back in tests/test_briefing.py.
if ! ldconfig -p 2>/dev/null | grep -q "libpangoft2-1.0.so" \
    || [ ! -f /usr/share/fonts/truetype/noto/NotoSans-Regular.ttf ] \
    || ! command -v pdftotext >/dev/null 2>&1; then
  echo "installing Pango, fonts-noto-core, fonts-dejavu-core and poppler-utils"
  apt_install libpango-1.0-0 libpangoft2-1.0-0 fonts-noto-core fonts-dejavu-core poppler-utils
fi

if [ -n "${DATABASE_URL:-}" ]; then
  echo "DATABASE_URL is set: not installing a local PostgreSQL server"
  exit 0
fi

if [ -z "$(pg_bindir)" ]; then
  echo "installing PostgreSQL server"
  apt_install postgresql postgresql-contrib
fi
bindir="$(pg_bindir)"
if [ -z "$bindir" ]; then
  echo "PostgreSQL server binaries not found after installation" >&2
  exit 1
fi
version="$(basename "$(dirname "$bindir")")"
if [ ! -f "/usr/share/postgresql/$version/extension/postgis.control" ]; then
  echo "installing PostGIS for PostgreSQL $version"
  apt_install "postgresql-$version-postgis-3"
fi
# Debian's postgresql package starts a system cluster on 5432; Borderwatch uses its own.
if ! id postgres >/dev/null 2>&1; then
  echo "the 'postgres' system user is missing (it comes with Debian's postgresql package)" >&2
  exit 1
fi
echo "system packages ready: PostgreSQL $version with PostGIS"
