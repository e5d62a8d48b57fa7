# flashrec: API, UDF server, deploy and producers for the production path (RisingWave + Kafka).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLASHREC_SQL_DIR=/app/sql \
    FLASHREC_DATA_DIR=/data \
    NUMBA_CACHE_DIR=/tmp/numba-cache

WORKDIR /app
COPY pyproject.toml README.md ./
COPY recommender ./recommender
COPY udfs ./udfs
COPY producers ./producers
COPY sql ./sql

RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 flashrec \
    && mkdir -p /data \
    && chown flashrec /data

USER 10001
VOLUME ["/data"]
EXPOSE 8080 8815
ENTRYPOINT ["flashrec"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
