# The workbench image: one image for the `web` and `worker` services of docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=workbench.settings \
    WORKBENCH_DATA_DIR=/data \
    WORKBENCH_STATIC_ROOT=/app/staticfiles

WORKDIR /app

# Dependencies first, so that a code change does not reinstall them.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# Static files live in the image, not on the data volume, so an upgrade brings its own.
# A throw-away key and data folder: nothing from this step may end up as a secret in a layer.
RUN SECRET_KEY=collectstatic-only-not-a-secret WORKBENCH_DATA_DIR=/tmp/build-data \
        python manage.py collectstatic --noinput \
    && rm -rf /tmp/build-data

# An empty named volume mounted on /data takes this folder's owner, so the app can write there.
RUN useradd --create-home --uid 1000 --user-group workbench \
    && mkdir -p /data \
    && chown workbench:workbench /data
USER workbench

EXPOSE 8000
CMD ["uvicorn", "workbench.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--no-access-log"]
