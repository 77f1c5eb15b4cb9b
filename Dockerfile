# Borderwatch API image. DATABASE_URL is required here: the embedded cluster is for local use.

# the dashboard's npm packages (MapLibre GL JS), from the lock file; only node_modules is kept
FROM node:20-slim AS web
WORKDIR /web
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    BORDERWATCH_ENVIRONMENT=production \
    BORDERWATCH_HOST=0.0.0.0 \
    BORDERWATCH_PORT=8000

WORKDIR /srv/borderwatch

COPY pyproject.toml uv.lock README.md alembic.ini ./
COPY scripts/uv-requirements.txt ./scripts/uv-requirements.txt
# installed editable: migrations/ and geodata/ are found beside the package
COPY app ./app
COPY migrations ./migrations
COPY geodata ./geodata
COPY --from=web /web/node_modules ./node_modules
COPY docker/entrypoint.sh /usr/local/bin/borderwatch-entrypoint

# WeasyPrint's Pango and a font with Vietnamese diacritics (the briefing, app/reports/)
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 \
       fonts-noto-core fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

# the Python packages exactly as uv.lock pins and hashes them (without the dev extra), in a
# virtual environment on PATH; uv itself pinned and hashed, and removed once it has done that.
# Compiled to bytecode at build time: the image's user cannot write it (and
# PYTHONDONTWRITEBYTECODE), so otherwise every start compiles every module again (the first
# briefing PDF paid 3-5 s for WeasyPrint's and fontTools' ~335 modules: docs/performance.md)
ENV VIRTUAL_ENV=/srv/borderwatch/.venv \
    PATH=/srv/borderwatch/.venv/bin:$PATH \
    UV_NO_CACHE=1 \
    UV_COMPILE_BYTECODE=1
RUN pip install --require-hashes -r scripts/uv-requirements.txt \
    && uv sync --locked \
    && python -m compileall -q app migrations \
    && pip uninstall -y uv \
    && useradd --system --uid 10001 --home-dir /srv/borderwatch borderwatch \
    && chown -R borderwatch /srv/borderwatch \
    && chmod 0755 /usr/local/bin/borderwatch-entrypoint

USER borderwatch
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"

ENTRYPOINT ["borderwatch-entrypoint"]
