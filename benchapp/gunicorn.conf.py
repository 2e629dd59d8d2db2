# gunicorn settings for the app under test: gunicorn -c benchapp/gunicorn.conf.py
# Read from the same BENCH_* environment variables as benchapp/settings.py (.env.example).
import os

# The server (matrix.toml's [servers]): gunicorn's worker class, and the app it serves, WSGI or
# ASGI (uvicorn's worker). BENCH_WSGI_APP: a target's own application (harness/spec/target.py).
worker_class = os.environ.get("BENCH_WORKER_CLASS", "gevent")
if os.environ.get("BENCH_APP_KIND", "wsgi") == "asgi":
    wsgi_app = os.environ.get("BENCH_ASGI_APP", "benchapp.asgi:application")
else:
    wsgi_app = os.environ.get("BENCH_WSGI_APP", "benchapp.wsgi:application")
bind = f"{os.environ.get('BENCH_HOST', '127.0.0.1')}:{os.environ.get('BENCH_PORT', '8000')}"
workers = int(os.environ.get("BENCH_WORKERS", "1"))
# gthread: the requests a worker serves at once, a thread each. Only there: gunicorn would turn
# a sync worker with more than one thread into gthread.
threads = int(os.environ.get("BENCH_THREADS", "1")) if worker_class == "gthread" else 1
# The most concurrent clients one worker accepts; more wait in the listen backlog.
worker_connections = int(os.environ.get("BENCH_WORKER_CONNECTIONS", "1000"))
# After SIGTERM, streams still open after this many seconds are cut.
graceful_timeout = int(os.environ.get("BENCH_GRACEFUL_TIMEOUT", "5"))
# gunicorn 27 would otherwise create ~/.gunicorn/gunicorn.ctl.
control_socket_disable = True
errorlog = "-"
loglevel = os.environ.get("BENCH_GUNICORN_LOG_LEVEL", "info")


def post_fork(server, worker):
    # psycopg2 blocks the whole worker on every query unless it yields to gevent.
    # BENCH_PSYCOGREEN=0 leaves it unpatched, to see that (the harness refuses to measure it).
    if os.environ.get("BENCH_PSYCOGREEN", "1") == "0" or worker_class != "gevent":
        return  # no gevent hub under threads or an event loop: psycopg2 stays as it is
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()


# BENCH_GC=tuned: Python's garbage collector, tuned for thousands of open streams. A full
# (generation 2) collection walks every tracked object while the whole worker, every greenlet,
# waits: with 2,500 streams open in a worker it paused for 100 to 330 ms every 5 to 10 s
# (make capacity's server_gc_pause_max_ms). Tuned: what the app has loaded by then is frozen out
# of the collections (gc.freeze); the young generations are collected after 70 times as many
# allocations, and a full collection comes after 100 of generation 1 (10 by default): about
# 10,000 times less often. The price is memory: cyclic garbage waits longer to be freed.
GC_THRESHOLDS = (50_000, 20, 100)


def post_worker_init(worker):
    if os.environ.get("BENCH_GC", "default") == "tuned":
        import gc

        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)


def child_exit(server, worker):
    # With several workers, /metrics sums them; a dead worker's gauges must stop counting.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
