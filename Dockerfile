# The application image: web, worker, beat and the release step all run from it, started by
# bin/serve (see docs/operations.md). Build: docker build -t loyalty .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Dependencies first, so that a code change does not reinstall them. (The lock file's local
# --find-links / file:// index lines only warn when absent; packages come from PyPI.)
RUN python -m venv /opt/venv
COPY requirements/prod.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt

RUN groupadd --system --gid 10001 loyalty \
    && useradd --system --uid 10001 --gid loyalty --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin loyalty

WORKDIR /app
# The code belongs to root and is read-only for the app; only var/ (static files, beat's
# schedule, media) is the app's to write.
COPY . .

# Static files are collected into the image (var/staticfiles, served by whitenoise). The
# settings refuse to load without a secret when DEBUG is off: this one exists only for this
# command and is not kept in the image.
RUN DEBUG=0 SECRET_KEY=build-time-collectstatic-only-not-a-secret-0123456789abcdefghij \
        ALLOWED_HOSTS=localhost python manage.py collectstatic --noinput \
    && mkdir -p var/media \
    && chown -R loyalty:loyalty var

USER loyalty

EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["bin/serve", "healthcheck"]

CMD ["bin/serve", "web"]
