"""Celery workers: apply deliveries, dispatch to n8n, run the sweeps. Never imports Flask.

Run with `celery -A workers worker` and `celery -A workers beat`.
"""

import logging

from shared.queue import celery_app as app
from workers import deliveries, dispatch, sweeps  # noqa: F401  (registers the tasks)

__all__ = ["app"]

logging.getLogger("shared").setLevel(logging.INFO)
