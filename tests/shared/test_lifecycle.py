"""The job lifecycle: status words, and what every happening does to a job in every state.

The two tables below are the contract's rules (CONTRACT §3, §4, §6, §7; README's Contract
notes) for each pair of (state, happening); the test fails when a pair is missing.
"""

from datetime import datetime, timedelta, timezone
from itertools import product

import pytest

from shared import lifecycle as lc

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
LATER = NOW + timedelta(seconds=60)
RESULT = {"text": "Dear hiring manager, ..."}

# Every job that is not finished is at 30 %: a word's lower progress does not move it back.
STATES = {
    "pending": lc.State(lc.PENDING, progress=30),
    "dispatched": lc.State(lc.DISPATCHED, progress=30),
    "running": lc.State(lc.RUNNING, progress=30),
    "succeeded": lc.State(lc.SUCCEEDED, progress=100),
    "failed by sender": lc.State(lc.FAILED, "sender", 30),
    "failed by dispatch": lc.State(lc.FAILED, "dispatch", 0),
    "failed by watchdog": lc.State(lc.FAILED, "watchdog", 30),
    "cancelled": lc.State(lc.CANCELLED, progress=30),
}

# Each class of callback word (CONTRACT §4), each dispatch outcome (§6), the watchdog (§7),
# and the app's own actions (§3).
HAPPENINGS = {
    "queued": lc.Reported("queued", 20),
    "generating": lc.Reported("generating", 20),
    "completed": lc.Reported("completed", result=RESULT),
    "error": lc.Reported("error", error="model overloaded"),
    "canceled": lc.Reported("canceled"),
    "sent 2xx": lc.DispatchAccepted(),
    "sent retry": lc.DispatchRetrying(LATER),
    "gave up": lc.DispatchGaveUp("gave up after 9 attempts: HTTP 503"),
    "sent 4xx": lc.DispatchRefused("HTTP 404 from https://n8n/webhook/x"),
    "timed out": lc.TimedOut(),
    "cancel": lc.Cancel(),
    "retry": lc.Retry(),
    "assign": lc.Assign("user-7"),
}

# What a happening sets when the job's state lets it, besides the status (the tables say it).
SETS = {
    # No change of status: a pending job keeps its next dispatch attempt.
    "queued": {"phase": "queued", "progress": 30},
    "generating": {"phase": "generating", "progress": 30, "next_attempt_at": None},
    "completed": {"phase": "completed", "progress": 100, "result": RESULT, "error": None, "failed_by": None,
                  "completed_at": NOW, "next_attempt_at": None},
    "error": {"phase": "error", "progress": 30, "error": "model overloaded", "failed_by": "sender",
              "completed_at": NOW, "next_attempt_at": None},
    "canceled": {"phase": "canceled", "progress": 30, "completed_at": NOW, "next_attempt_at": None},
    "sent 2xx": {"next_attempt_at": None},
    "sent retry": {"next_attempt_at": LATER},
    "gave up": {"failed_by": "dispatch", "error": "gave up after 9 attempts: HTTP 503", "completed_at": NOW,
                      "next_attempt_at": None},
    "sent 4xx": {"failed_by": "dispatch", "error": "HTTP 404 from https://n8n/webhook/x", "completed_at": NOW,
                  "next_attempt_at": None},
    "timed out": {"failed_by": "watchdog", "error": "timed out", "completed_at": NOW},
    "cancel": {"completed_at": NOW, "next_attempt_at": None},
    "retry": {"phase": None, "progress": 0, "error": None, "failed_by": None, "completed_at": None, "attempts": 0,
              "next_attempt_at": NOW},
    "assign": {},
}
REFUSED = {"timed out": "not_watched", "cancel": "not_cancellable", "retry": "not_retryable"}

# Cells: the status the job is in afterwards, with what SETS says; `!` the owner is notified
# of the outcome; `=` recorded only (an event: the job's revision moves, nothing else);
# `refused` a Refusal with the happening's code (REFUSED).
CALLBACKS = """
                     queued      generating  completed   error       canceled
pending              pending     running     succeeded!  failed!     cancelled
dispatched           dispatched  running     succeeded!  failed!     cancelled
running              running     running     succeeded!  failed!     cancelled
succeeded            =           =           =           =           =
failed by sender     =           =           =           =           =
failed by dispatch   =           =           succeeded!  =           =
failed by watchdog   =           =           succeeded!  =           =
cancelled            =           =           =           =           =
"""
OTHERS = """
                     sent 2xx    sent retry  gave up     sent 4xx    timed out   cancel      retry       assign
pending              dispatched  pending     failed!     failed!     refused     cancelled   refused     pending
dispatched           =           =           =           =           failed!     cancelled   refused     dispatched
running              =           =           =           =           failed!     cancelled   refused     running
succeeded            =           =           =           =           refused     refused     refused     succeeded
failed by sender     =           =           =           =           refused     refused     pending     failed
failed by dispatch   =           =           =           =           refused     refused     pending     failed
failed by watchdog   =           =           =           =           refused     refused     pending     failed
cancelled            =           =           =           =           refused     refused     pending     cancelled
"""


def parse(table: str) -> dict[tuple[str, str], str]:
    """{(state, happening): cell} of a table whose columns are 12 characters wide after a
    21-character state column."""
    header, *rows = [line for line in table.splitlines() if line.strip()]

    def cells(line):
        return [line[start:start + 12].strip() for start in range(21, len(line), 12)]

    happenings = cells(header)
    parsed = {}
    for row in rows:
        state, values = row[:21].strip(), cells(row)
        assert len(values) == len(happenings), row
        parsed.update({(state, happening): value for happening, value in zip(happenings, values)})
    return parsed


TABLE = parse(CALLBACKS) | parse(OTHERS)


def test_the_table_covers_every_state_and_happening():
    assert set(TABLE) == set(product(STATES, HAPPENINGS))
    assert len(TABLE) == len(STATES) * len(HAPPENINGS) == 104


@pytest.mark.parametrize("state, happening", sorted(TABLE))
def test_what_each_happening_does_in_each_state(state, happening):
    cell = TABLE[state, happening]
    decided = lc.decide(STATES[state], HAPPENINGS[happening], NOW)
    if cell == "refused":
        assert isinstance(decided, lc.Refusal) and decided.code == REFUSED[happening]
        return
    assert isinstance(decided, lc.Change)
    if cell == "=":
        assert (decided.fields, decided.owner, decided.notice) == ({}, lc.KEEP, None)
        return
    status = cell.rstrip("!")
    notice = {"succeeded!": lc.JOB_SUCCEEDED, "failed!": lc.JOB_FAILED}.get(cell)
    assert decided.fields.get("status", STATES[state].status) == status
    assert {name: value for name, value in decided.fields.items() if name != "status"} == SETS[happening]
    assert decided.notice == notice
    assert decided.owner == ("user-7" if happening == "assign" else lc.KEEP)


@pytest.mark.parametrize(
    "word, status",
    [("queued", None), ("PENDING", None), ("initializing", lc.RUNNING), ("saving", lc.RUNNING),
     ("completed", lc.SUCCEEDED), ("done", lc.SUCCEEDED), ("error", lc.FAILED), ("canceled", lc.CANCELLED)],
)
def test_words_map_to_canonical_statuses(word, status):
    assert lc.canonical(word) == status


def test_unknown_word_is_not_known():
    assert not lc.is_known_word("exploded")


@pytest.mark.parametrize("word, progress, shown", [("generating", 60, 60), ("generating", 10, 40),
                                                    ("queued", None, 40), ("queued", 55, 55)])
def test_progress_moves_forward_only_within_an_attempt(word, progress, shown):
    change = lc.decide(lc.State(lc.RUNNING, progress=40), lc.Reported(word, progress), NOW)
    assert change.fields["progress"] == shown


def test_a_senders_failure_without_an_error_says_its_message_else_failed():
    said = lc.decide(lc.State(lc.RUNNING), lc.Reported("failed", message="quota exceeded"), NOW)
    unsaid = lc.decide(lc.State(lc.RUNNING), lc.Reported("failed"), NOW)
    assert (said.fields["error"], unsaid.fields["error"]) == ("quota exceeded", "failed")


@pytest.mark.parametrize("reported, said", [
    (lc.Reported("completed", message=" Relance envoyée ", result={"summary": "ignored"}), "Relance envoyée"),
    (lc.Reported("completed", result={"summary": "Devis envoyé", "message": "ignored"}), "Devis envoyé"),
    (lc.Reported("completed", result={"message": "Fait"}), "Fait"),
    (lc.Reported("completed", message="  ", result=["not", "a", "dict"]), None),
    (lc.Reported("failed", message="Échec", error="Clé invalide"), "Échec"),
])
def test_the_outcome_notification_carries_the_senders_words(reported, said):
    assert lc.decide(lc.State(lc.RUNNING), reported, NOW).said == said


def test_no_outcome_no_words():
    assert lc.decide(lc.State(lc.RUNNING), lc.Reported("running", message="half way"), NOW).said is None


@pytest.mark.parametrize("state", sorted(STATES))
def test_a_callback_naming_a_user_gives_an_unassigned_job_its_owner_in_any_state(state):
    unowned = lc.State(STATES[state].status, STATES[state].failed_by, STATES[state].progress, owned=False)
    assert lc.decide(unowned, lc.Reported("queued", user_id="42"), NOW).owner == "42"
    assert lc.decide(STATES[state], lc.Reported("queued", user_id="42"), NOW).owner is lc.KEEP


@pytest.mark.parametrize("source, owned, fields, notice", [
    ("api", True, {"status": lc.PENDING, "progress": 0, "attempts": 0, "next_attempt_at": NOW}, None),
    ("action", True, {"status": lc.PENDING, "progress": 0, "attempts": 0, "next_attempt_at": NOW}, None),
    # Work the sender already started: never dispatched by us, but watched.
    ("callback", True, {"status": lc.DISPATCHED, "progress": 0, "attempts": 0}, None),
    ("callback", False, {"status": lc.DISPATCHED, "progress": 0, "attempts": 0}, lc.JOB_UNASSIGNED),
])
def test_a_new_job(source, owned, fields, notice):
    change = lc.created(source, owned, NOW)
    assert (change.fields, change.notice, change.owner) == (fields, notice, lc.KEEP)


def test_a_change_names_only_columns_of_a_jobs_state():
    with pytest.raises(ValueError, match="user_id"):
        lc.Change({"user_id": 3})


def test_a_queued_report_leaves_a_pending_jobs_next_dispatch_attempt_alone():
    waiting = lc.decide(STATES["pending"], HAPPENINGS["sent retry"], NOW)
    assert waiting.fields["next_attempt_at"] == LATER
    queued = lc.decide(STATES["pending"], lc.Reported("queued", 20), NOW)
    assert queued.fields.get("status", lc.PENDING) == lc.PENDING
    assert "next_attempt_at" not in queued.fields  # still due at LATER: the sweep sends it
