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
