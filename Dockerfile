# The production image: one image for the web, worker and beat services of docker-compose.yml.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer: a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir cockpit traces approvals incidents \
    && pip install --editable '.[demo]' \
    && rm -rf cockpit traces approvals incidents

COPY . .

# Static files are collected at build time; the data dir only serves this build step.
RUN COCKPIT_DATA_DIR=/tmp/build-data python manage.py collectstatic --noinput --verbosity 0 \
    && rm -rf /tmp/build-data \
    && useradd --system --uid 10001 --home-dir /app cockpit \
    && mkdir -p /app/var && chown cockpit /app/var

USER cockpit
EXPOSE 8000

CMD ["uvicorn", "cockpit.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
