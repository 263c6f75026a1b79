# What ships is what runs: the image holds the wheel built from this checkout, installed with the
# lock file's versions, and nothing else of the source. docker-compose.yml runs `kalo run NAME`.

# Build stage: the wheel (contracts, services, and deploy/postgres as services/migrations).
FROM python:3.11-slim AS build
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY contracts contracts
COPY services services
COPY deploy/postgres deploy/postgres
RUN uv build --wheel -o /dist

# Runtime stage: the locked dependencies, then the wheel alone.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir -r /tmp/requirements.lock && rm /tmp/requirements.lock
COPY --from=build /dist/ /tmp/dist/
RUN pip install --no-cache-dir --no-deps /tmp/dist/kalo-*.whl && rm -rf /tmp/dist

# Not root (by uid: a name may not resolve on the host): a service that is broken into cannot write outside its data folder. faust keeps its
# local state under KALO_DATA_DIR, which this user owns.
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home kalo \
    && mkdir -p /var/lib/kalo /audit && chown kalo:kalo /var/lib/kalo /audit
ENV KALO_DATA_DIR=/var/lib/kalo \
    KALO_READY_URL=http://127.0.0.1:8080/ready
USER 10001

# Healthy when the service's /ready answers 200 (Python's urllib: the image has no curl).
# docker-compose.yml asks each service's own port; KALO_READY_URL names it elsewhere.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['KALO_READY_URL'], timeout=4)"]
