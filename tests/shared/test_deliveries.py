"""shared.deliveries.record_many: a delivery is known by its id and by every verified HMAC
signature of a request naming it (the original's and each retry's); a repeat of either is a
duplicate of the row first recorded, whatever batch, connection or process it comes in. On
PostgreSQL (arrays, autocommit) and SQLite."""

import threading
import uuid

import pytest
from sqlalchemy import event, select

from helpers.postgres import insert_waiting
from shared import deliveries
from shared.db import autocommit_engine
from shared.deliveries import Incoming, Recorded, record_many
from shared.models import Delivery, DeliverySignature

ENDPOINT = "n8n.job_status"


def item(delivery_id=None, signature=None, endpoint=ENDPOINT, job_id=None) -> Incoming:
    return Incoming(endpoint, delivery_id or f"rec-{uuid.uuid4()}", job_id or f"job-{uuid.uuid4()}",
                    "running", b"{}", {}, signature)


def signature() -> str:
    return uuid.uuid4().hex * 2  # 64 hex digits, as shared.signing reports them


@pytest.fixture(scope="module")
def pg_autocommit(engine):
    pool = autocommit_engine(engine)
    yield pool
    pool.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def record(request):
    """record(batch) as the ingress's writer does: one call, committed when it returns."""
    target = request.getfixturevalue("pg_autocommit" if request.param == "postgresql" else "sqlite_engine")
    statements = []

    def run(batch):
        with target.begin() as connection:
            return record_many(connection, batch)

    def count(_conn, _cursor, statement, *_):
        statements.append(statement)

    event.listen(target, "before_cursor_execute", count)
    run.engine, run.statements = target, statements
    yield run
    event.remove(target, "before_cursor_execute", count)


def stored(engine, pk):
    with engine.connect() as connection:
        return connection.execute(select(Delivery.__table__).where(Delivery.id == pk)).one()


def named(engine, sig, endpoint=ENDPOINT):
    """The delivery id a stored signature names; None when it is not stored."""
    with engine.connect() as connection:
        return connection.scalar(select(DeliverySignature.delivery_id).where(
            DeliverySignature.endpoint == endpoint, DeliverySignature.signature == sig))


def test_new_deliveries_are_one_statement(record):
    batch = [item(signature=signature()) for _ in range(5)] + [item() for _ in range(5)]
    results = record(batch)
    assert [r.duplicate for r in results] == [False] * 10
    assert [r.delivery_id for r in results] == [i.delivery_id for i in batch]
    assert len({r.pk for r in results}) == 10
    assert results == sorted(results, key=lambda r: r.pk), "ids out of the batch's order"
    sent = [s for s in record.statements if not s.startswith("BEGIN")]
    if record.engine.dialect.name == "postgresql":
        assert len(sent) == 1, sent
    else:  # item by item: a claim per signature and an INSERT per delivery, nothing looked up
        tables = [s.split()[2] for s in sent if s.startswith("INSERT INTO")]
        assert (len(sent), tables) == (15, ["delivery_signatures", "deliveries"] * 5 + ["deliveries"] * 5), sent
    assert [named(record.engine, i.signature) for i in batch[:5]] == [i.delivery_id for i in batch[:5]]


def test_a_signed_request_replayed_under_other_ids_is_the_first_one(record):
    sig = signature()
    first = record([item("original-" + uuid.uuid4().hex, sig)])[0]
    replays = [item(f"forged-{n}-" + uuid.uuid4().hex, sig) for n in range(5)]
    results = record(replays[:2]) + record(replays[2:])
    assert all(r.duplicate for r in results)
    # Answered as the recorded delivery: its row, its delivery id, its job.
    assert {(r.pk, r.delivery_id, r.job_id) for r in results} == {(first.pk, first.delivery_id, first.job_id)}
    row = stored(record.engine, first.pk)
    assert (row.duplicates, row.delivery_id, named(record.engine, sig)) == (5, first.delivery_id, first.delivery_id)
    with record.engine.connect() as connection:
        forged = [i.delivery_id for i in replays]
        assert connection.scalar(select(Delivery.id).where(Delivery.delivery_id.in_(forged))) is None


def test_a_retry_signed_again_under_the_same_id_is_a_duplicate(record):
    first = item(signature=signature())
    recorded = record([first])[0]
    retry = record([item(first.delivery_id, signature())])[0]
    assert (retry.duplicate, retry.pk, retry.delivery_id) == (True, recorded.pk, first.delivery_id)


def test_a_retry_replayed_under_other_ids_is_the_delivery_it_retried(record):
    """The sender's retry, signed again with a new timestamp under the same id, is a
    duplicate by its id; its signature is kept too, so a capture of the retry replayed under
    another id, or none (the body's hash), is the same delivery."""
    original = item(signature=signature())
    first = record([original])[0]
    retry = item(original.delivery_id, signature())
    assert record([retry])[0] == Recorded(first.pk, original.delivery_id, first.job_id, duplicate=True)
    # Under another X-Delivery-Id or Idempotency-Key, and with none: the body's hash.
    replays = [item(f"forged-{uuid.uuid4()}", retry.signature), item(f"sha256:{signature()}", retry.signature)]
    results = record(replays[:1]) + record(replays[1:])
    assert [(r.pk, r.delivery_id, r.duplicate) for r in results] == [(first.pk, original.delivery_id, True)] * 2
    assert stored(record.engine, first.pk).duplicates == 3
    assert named(record.engine, retry.signature) == original.delivery_id
    with record.engine.connect() as connection:
        forged = [i.delivery_id for i in replays]
        assert connection.scalar(select(Delivery.id).where(Delivery.delivery_id.in_(forged))) is None


def test_a_retry_and_its_replay_in_the_batch_of_the_original(record):
    original = item(signature=signature())
    retry = item(original.delivery_id, signature())
    replay = item(f"forged-{uuid.uuid4()}", retry.signature)
    results = record([original, retry, replay])
    assert [r.duplicate for r in results] == [False, True, True]
    assert {(r.pk, r.delivery_id) for r in results} == {(results[0].pk, original.delivery_id)}
    assert stored(record.engine, results[0].pk).duplicates == 2


@pytest.mark.parametrize("replay_first", [True, False])
def test_a_replay_and_a_new_delivery_under_one_id_in_one_batch(record, replay_first):
    """A replay forged under the id of a new delivery in the same batch: the new one is
    recorded under its id, the replay is the delivery its signature names."""
    signed = item(signature=signature())
    first = record([signed])[0]
    shared_id = f"rec-{uuid.uuid4()}"
    replay, new = item(shared_id, signed.signature), item(shared_id, signature(), job_id="the-new-one")
    batch = [replay, new] if replay_first else [new, replay]
    results = dict(zip(("replay", "new") if replay_first else ("new", "replay"), record(batch)))
    assert (results["replay"].pk, results["replay"].duplicate) == (first.pk, True)
    assert (results["new"].delivery_id, results["new"].job_id) == (shared_id, "the-new-one")
    assert results["new"].duplicate is False


def test_the_same_signature_on_another_endpoint_is_another_delivery(record):
    sig = signature()
    one, other = record([item(signature=sig), item(signature=sig, endpoint="webhooks.image_completion")])
    assert (one.duplicate, other.duplicate) == (False, False) and one.pk != other.pk


def test_repeats_within_one_batch(record):
    sig, same_id = signature(), f"rec-{uuid.uuid4()}"
    batch = [
        item(signature=sig),                 # 0 new
        item(signature=sig),                 # 1 its signature again, another id: 0's
        item(same_id, signature()),          # 2 new
        item(same_id, signature()),          # 3 its id again, signed again: 2's
        item(),                              # 4 new
        item(same_id),                       # 5 its id, unsigned: 2's
    ]
    batch.append(batch[0])                   # 6 the very same request: 0's
    results = record(batch)
    assert [r.duplicate for r in results] == [False, True, False, True, False, True, True]
    assert results[1].pk == results[6].pk == results[0].pk
    assert results[1].delivery_id == batch[0].delivery_id
    assert results[3].pk == results[5].pk == results[2].pk
    assert stored(record.engine, results[0].pk).duplicates == 2
    assert stored(record.engine, results[2].pk).duplicates == 2


def test_a_repeat_of_two_deliveries_is_the_signed_ones(record):
    """A captured request replayed under the id of another delivery: the signature says
    which request it is."""
    signed, other = item(signature=signature()), item(signature=signature())
    first, second = record([signed, other])
    replay = record([item(other.delivery_id, signed.signature)])[0]
    assert (replay.duplicate, replay.pk, replay.delivery_id) == (True, first.pk, signed.delivery_id)
    assert (stored(record.engine, first.pk).duplicates, stored(record.engine, second.pk).duplicates) == (1, 0)


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_two_processes_recording_the_same_signed_request_the_database_decides(engine, pg_autocommit, outcome):
    """Another web process's INSERT of the same signature, not yet committed: this one waits
    for it, then is its duplicate (committed) or the delivery itself (rolled back)."""
    sig = signature()
    theirs, ours = item("theirs-" + uuid.uuid4().hex, sig), item("ours-" + uuid.uuid4().hex, sig)
    result = []
    with engine.connect() as other_process:
        transaction = other_process.begin()
        their_pk = record_many(other_process, [theirs])[0].pk
        thread = threading.Thread(target=lambda: result.extend(_record(pg_autocommit, [ours])))
        thread.start()
        insert_waiting(engine)
        (transaction.commit if outcome == "commit" else transaction.rollback)()
    thread.join(10)
    if outcome == "commit":
        assert (result[0].duplicate, result[0].pk, result[0].delivery_id) == (True, their_pk, theirs.delivery_id)
    else:
        assert (result[0].duplicate, result[0].delivery_id) == (False, ours.delivery_id)


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_a_retry_replayed_while_the_retry_is_being_recorded_the_database_decides(engine, pg_autocommit, outcome):
    """Another web process records the sender's retry (a duplicate by id, its signature
    new), not yet committed; a replay of that retry under another id waits for it, then is
    a duplicate of the delivery retried (committed) or a delivery of its own (rolled back)."""
    original = item(signature=signature())
    first = _record(pg_autocommit, [original])[0]
    retry = item(original.delivery_id, signature())
    replay = item("replay-" + uuid.uuid4().hex, retry.signature)
    result = []
    with engine.connect() as other_process:
        transaction = other_process.begin()
        assert record_many(other_process, [retry])[0] == Recorded(first.pk, original.delivery_id, first.job_id, True)
        thread = threading.Thread(target=lambda: result.extend(_record(pg_autocommit, [replay])))
        thread.start()
        insert_waiting(engine)
        (transaction.commit if outcome == "commit" else transaction.rollback)()
    thread.join(10)
    if outcome == "commit":
        assert (result[0].duplicate, result[0].pk, result[0].delivery_id) == (True, first.pk, original.delivery_id)
    else:
        assert (result[0].duplicate, result[0].delivery_id) == (False, replay.delivery_id)


def _record(pool, batch):
    with pool.begin() as connection:
        return record_many(connection, batch)


def test_a_row_deleted_between_the_conflict_and_its_lookup_is_recorded_again(engine, pg_autocommit):
    """Retention may delete the row an item conflicted with before it is looked up: the item
    is then inserted again, not lost."""
    sig = signature()
    old = _record(pg_autocommit, [item(signature=sig)])[0]
    again = item(signature=sig)

    deleted = []

    def delete_first(_conn, _cursor, statement, *_):
        if statement.startswith("SELECT") and not deleted:
            with engine.begin() as connection:
                deleted.append(connection.execute(Delivery.__table__.delete().where(Delivery.id == old.pk)).rowcount)

    event.listen(pg_autocommit, "before_cursor_execute", delete_first)
    try:
        result = _record(pg_autocommit, [again])[0]
    finally:
        event.remove(pg_autocommit, "before_cursor_execute", delete_first)
    assert deleted == [1]
    assert (result.duplicate, result.delivery_id) == (False, again.delivery_id) and result.pk != old.pk
    assert named(pg_autocommit, sig) == again.delivery_id


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"webhook-id": "w", "x-delivery-id": "x", "idempotency-key": "i"}, "w"),
        ({"x-delivery-id": " x\t", "idempotency-key": "i"}, "x"),
        ({"x-delivery-id": "  ", "idempotency-key": "i"}, "i"),
        ({"x-delivery-id": "x" * 255}, "x" * 255),
        ({}, "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"),
    ],
)
def test_delivery_id_for(headers, expected):
    assert deliveries.delivery_id_for(headers, b"{}") == expected


@pytest.mark.parametrize("name, spelled", [("webhook-id", "webhook-id"), ("x-delivery-id", "X-Delivery-Id"),
                                           ("idempotency-key", "Idempotency-Key")])
def test_an_id_longer_than_its_column_is_refused_never_cut(name, spelled):
    from shared.callbacks import PayloadError

    with pytest.raises(PayloadError) as caught:
        deliveries.delivery_id_for({"x-delivery-id": "short", name: "x" * 256}, b"{}")
    assert caught.value.code == "validation_error" and spelled in caught.value.details
