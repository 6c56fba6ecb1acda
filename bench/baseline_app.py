"""The ingress baseline: a Flask app that reads the body and answers a JSON 200 shaped like the
service's, run by the Procfile's web line with its app replaced, so that the two differ only in
what the service does per request (verify, validate, record, enqueue, log)."""

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
