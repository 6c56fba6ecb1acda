"""gunicorn settings for `web` (Procfile): binds $PORT, threads for I/O-bound requests."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
# Requests wait on their delivery's shared commit (ingress/recorder.py): the more threads
# wait together, the more deliveries share a commit and a message (bench: 4 -> 16 threads,
# +60 % accepted/s on 2 cores). The database pool (shared/db.py) has room for them all.
threads = int(os.environ.get("WEB_THREADS", "16"))
timeout = 30
graceful_timeout = 20
# Senders retry on errors; the access log is what an operator follows.
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
