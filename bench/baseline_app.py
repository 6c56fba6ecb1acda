"""The ingress baseline: a Flask app that only reads the body and answers 200.

Run under the same gunicorn command and configuration as the service's `web` process:

    gunicorn --config ingress/gunicorn_conf.py "bench.baseline_app:create_app()"

It answers the callback path with a small JSON body shaped like the service's, so the two
differ only in what the service does per request (verify, validate, record, enqueue, log).
"""

from __future__ import annotations

from flask import Flask, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/api/n8n/hooks/job-status")
    def job_status():
        body = request.get_data()
        return {"accepted": True, "duplicate": False, "delivery_id": "baseline", "bytes": len(body)}, 200

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app
