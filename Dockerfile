# syntax=docker/dockerfile:1
# mbc-cds: the CDS Hooks service as a container.
#   docker build -t mbc-cds .
#   docker run -p 8080:8080 -e MBC_CDS_DATABASE_URL=postgresql+psycopg://... -e MBC_CDS_CLIENTS_FILE=... mbc-cds
# The image runs `mbc-cds serve` on port 8080 as a non-root user; any other subcommand works too
# (`docker run mbc-cds migrate`, `docker run mbc-cds load --fhir-server ...`).

# ---- build: the wheel, installed with the postgres extra into a virtualenv ------------------------------
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --upgrade pip wheel
COPY pyproject.toml README.md ./
COPY app ./app
COPY cds_hooks ./cds_hooks
COPY plandefinitions ./plandefinitions
COPY terminology ./terminology
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip install "$(ls /wheels/mbc_cds-*.whl)[postgres]" \
 && mbc-cds --help >/dev/null \
 && python -c "from importlib.resources import files; assert files('app').joinpath('static', 'viewer.js').is_file()"

# ---- runtime: the virtualenv only, no compilers, no source tree ------------------------------------------
FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MBC_CDS_DATABASE_URL=sqlite:////data/mbc-cds.db \
    MBC_CDS_AUDIT_SPOOL_FILE=/data/mbc-cds-audit-spool.jsonl
RUN groupadd --system --gid 10001 mbc \
 && useradd --system --uid 10001 --gid mbc --home-dir /home/mbc --create-home --shell /usr/sbin/nologin mbc \
 && mkdir -p /data \
 && chown mbc:mbc /data
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
WORKDIR /home/mbc
EXPOSE 8080
# The slim image has no curl: the probe is Python's urllib against the liveness endpoint.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["mbc-cds"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
