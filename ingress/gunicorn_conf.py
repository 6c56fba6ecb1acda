"""gunicorn settings for `web` (Procfile): binds $PORT, gevent workers for I/O-bound requests."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# A request spends most of its time waiting: on its delivery's shared INSERT
# (ingress/recorder.py), on PostgreSQL for a poll. With threads, every wait ended in a
# scramble for the GIL, and the writer that the waiting requests depend on queued behind
# them for each of its round trips. Greenlets switch only where they wait. The class is gunicorn's
# gevent worker, answering in JSON where gunicorn answers itself (ingress/gunicorn_worker.py).
worker_class = "ingress.gunicorn_worker.Worker"
worker_connections = int(os.environ.get("WEB_CONNECTIONS", "1000"))
timeout = 30
graceful_timeout = 20
# Senders retry on errors; the access log is what an operator follows.
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'


def when_ready(server):
    # The workers and doctor build the callback URL from the base URL the web records here
    # when PUBLIC_BASE_URL is unset (a Procfile runner gives each process type its own PORT).
    # Runs in the master, which loads neither the app nor Celery (each worker loads them after
    # its fork, where gevent patches first): only the settings and this one write.
    from shared.settings import current
    from shared.sweeps import record_web_base_url

    settings = current()
    try:
        record_web_base_url(settings)
        server.log.info("recorded %s as this web's base URL (heartbeats row 'web')", settings.public_base_url)
    except Exception as exc:  # the web serves all the same; the workers fall back to their own default
        server.log.warning(
            "could not record this web's base URL (%s: %s): workers without PUBLIC_BASE_URL will send "
            "callback URLs on their own PORT; set PUBLIC_BASE_URL", type(exc).__name__, exc,
        )
