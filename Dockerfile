# syntax=docker/dockerfile:1
# One image for every audiencesync process; docker-compose.yml picks the process with `command`.
#   docker build -t audiencesync .
#   docker run --rm -p 8000:8000 -e DATABASE_URL=... -e REDIS_URL=... \
#     -e AUDIENCESYNC_SECRET_KEY=... audiencesync

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the package is built from (the packages listed in pyproject.toml), so that local
# files (a .audiencesync data directory, virtualenvs, caches) never reach the build.
COPY pyproject.toml README.md ./
COPY api ./api
COPY cli ./cli
COPY emulators ./emulators
COPY scheduler ./scheduler
COPY shared ./shared
COPY worker ./worker
# A virtualenv keeps the installed project and its dependencies in one directory to copy over.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install . \
    && cd / \
    && /opt/venv/bin/python -c "import api.app, cli.main, worker.tasks" \
    && /opt/venv/bin/audiencesync --help > /dev/null

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    AUDIENCESYNC_DATA_DIR=/var/lib/audiencesync
# An unprivileged user; the data directory (beat's schedule file) is the only place it writes.
RUN groupadd --system --gid 10001 audiencesync \
    && useradd --system --uid 10001 --gid audiencesync --home-dir /home/audiencesync \
        --create-home --shell /usr/sbin/nologin audiencesync \
    && install -d -o audiencesync -g audiencesync -m 0750 /var/lib/audiencesync
COPY --from=build /opt/venv /opt/venv
USER audiencesync
WORKDIR /home/audiencesync
EXPOSE 8000 5555
CMD ["audiencesync", "api", "--host", "0.0.0.0", "--port", "8000"]
