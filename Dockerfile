# One image for the app under test (gunicorn, gevent worker) and for Locust (master and
# workers): docker-compose.yml chooses the command. The same pinned requirements as `make`.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=benchapp.settings

WORKDIR /bench
COPY requirements/bench.txt requirements/bench.txt
RUN pip install --no-cache-dir -r requirements/bench.txt
COPY django-stream-release django-stream-release
RUN pip install --no-cache-dir --no-deps ./django-stream-release

COPY matrix.toml ./
COPY benchapp benchapp
COPY locustfiles locustfiles
COPY harness harness

RUN useradd --create-home --uid 10001 bench
USER 10001

EXPOSE 8000 8089
# The app: create the schema, seed the table, serve (settings from BENCH_*, compose.env).
CMD ["sh", "-c", "python -m benchapp migrate --no-input && python -m benchapp seed --rows \"${BENCH_SEED_ROWS:-10000}\" && exec gunicorn -c benchapp/gunicorn.conf.py"]
