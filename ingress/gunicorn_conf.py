"""gunicorn settings for `web` (Procfile): binds $PORT, gevent workers for I/O-bound requests."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# A request spends most of its time waiting: on its delivery's shared INSERT
# (ingress/recorder.py), on PostgreSQL for a poll. With threads, every wait ended in a
# scramble for the GIL, and the writer that the waiting requests depend on queued behind
# them for each of its round trips. Greenlets switch only where they wait (bench, 2 cores:
# gthread 2 x 16 -> gevent, accepted/s x 1.9; bench/README.md). The class is gunicorn's
# gevent worker, answering in JSON where gunicorn answers itself (ingress/gunicorn_worker.py).
worker_class = "ingress.gunicorn_worker.Worker"
worker_connections = int(os.environ.get("WEB_CONNECTIONS", "1000"))
timeout = 30
graceful_timeout = 20
# Senders retry on errors; the access log is what an operator follows.
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'

