"""Messages enqueued by a web of the previous release are applied by a worker of this one:
an upgrade does not make them fail once."""

import json
import uuid
from datetime import timedelta

from sqlalchemy import select, update

from helpers import wait_for
from shared import deliveries
from shared.callbacks import ENDPOINTS
from shared.models import Delivery, Job, utcnow
from shared.queue import APPLY_DELIVERIES, celery_app

HOOK = next(e for e in ENDPOINTS.values() if e.path == "/api/n8n/hooks/job-status")


def test_apply_message_of_one_delivery_pk_is_applied(stack, engine):
    job_id = f"old-format-{uuid.uuid4()}"
    body = json.dumps({"job_id": job_id, "status": "succeeded", "result": {"text": "done"}}).encode()
    with engine.begin() as connection:
        [recorded] = deliveries.record_many(
            connection, [deliveries.Incoming(HOOK.name, f"old-{uuid.uuid4()}", job_id, "succeeded", body, {})]
        )
        # Out of the redeliver sweep's reach: only the message below can apply it.
        connection.execute(
            update(Delivery).where(Delivery.id == recorded.pk).values(last_enqueued_at=utcnow() + timedelta(days=1))
        )
    # The task's arguments before 09c35dd (one delivery per message).
    celery_app.send_task(APPLY_DELIVERIES, kwargs={"delivery_pk": recorded.pk})

    def applied():
        with engine.connect() as db:
            return db.scalar(select(Delivery.applied_at).where(Delivery.id == recorded.pk))

    wait_for(applied, timeout=30, message="the delivery of the old-format message applied")
    with engine.connect() as db:
        assert db.scalar(select(Job.status).where(Job.id == job_id)) == "succeeded"
