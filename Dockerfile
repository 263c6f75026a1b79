FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY contracts contracts
COPY services services
COPY deploy/postgres deploy/postgres
RUN pip install --no-cache-dir --no-deps -e .
