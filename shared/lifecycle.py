"""The job lifecycle: status words, canonical statuses, and what every happening does to a job.

Pure. `created` and `decide` say what a happening does to a job in a given state: a Change
(the fields to set, the notification it earns) or a Refusal (the error code a client gets).
They decide every state change there is: creation, a sender's callback, each dispatch
outcome, the watchdog's time-out, cancel, retry and assign. `shared.jobs.apply_change`
writes a Change to a job; nothing else writes a job's status. The ingress uses the words
and statuses to validate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

PENDING = "pending"
DISPATCHED = "dispatched"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

STATUSES = (PENDING, DISPATCHED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
# Who failed a job: the sender, or our own side. A later `succeeded` from the sender
# overrules a failure of our own side: the work was evidently done.
BY_SENDER, BY_DISPATCH, BY_WATCHDOG = "sender", "dispatch", "watchdog"
OWN_SIDE_FAILURES = frozenset({BY_DISPATCH, BY_WATCHDOG})
# Jobs the watchdog times out when they stay silent: someone else is working on them.
WATCHED = (DISPATCHED, RUNNING)
TIMED_OUT_ERROR = "timed out"

# Notifications a change earns: the owner's, once per transition into succeeded or failed;
# the admins', for a job that came without an owner.
JOB_SUCCEEDED, JOB_FAILED, JOB_UNASSIGNED = "job_succeeded", "job_failed", "job_unassigned"
_OUTCOMES = {SUCCEEDED: JOB_SUCCEEDED, FAILED: JOB_FAILED}

# Sender status word -> canonical status; None means "no change of status".
WORDS: dict[str, str | None] = {
    "pending": None,
    "queued": None,
    "running": RUNNING,
    "processing": RUNNING,
    "initializing": RUNNING,
    "generating": RUNNING,
    "saving": RUNNING,
    "progress": RUNNING,
    "succeeded": SUCCEEDED,
    "success": SUCCEEDED,
    "completed": SUCCEEDED,
    "done": SUCCEEDED,
    "failed": FAILED,
    "error": FAILED,
    "cancelled": CANCELLED,
    "canceled": CANCELLED,
}


def is_known_word(word: str) -> bool:
    return word.strip().lower() in WORDS


def canonical(word: str) -> str | None:
    """The canonical status a sender's word moves a job to (None: no change). KeyError if unknown."""
    return WORDS[word.strip().lower()]


# --- what a job is, what happens to it, what that does -------------------------------------


@dataclass(frozen=True)
class State:
    """What the decisions read of a job."""

    status: str
    failed_by: str | None = None
    progress: int = 0
    owned: bool = True

    @classmethod
    def of(cls, job) -> State:
        return cls(job.status, job.failed_by, job.progress, job.user_id is not None)


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()  # Change.owner: the job keeps its owner
# The columns of jobs that make its state: what a Change may set.
COLUMNS = frozenset({
    "status", "phase", "progress", "result", "error", "failed_by", "completed_at", "next_attempt_at", "attempts",
})


@dataclass(frozen=True)
class Change:
    """What a happening does to a job: each of `fields` (a column of jobs) is set; `owner`
    (the application's user id, None for nobody) unless KEEP; `notice` is the notification
    it earns, with the sender's own words (`said`) for an outcome. The job's revision moves
    whatever else does: an empty Change records that something happened (an event) and no more."""

    fields: dict[str, Any] = field(default_factory=dict)
    owner: Any = KEEP
    notice: str | None = None
    said: str | None = None
    at: datetime | None = None

    def __post_init__(self):
        unknown = self.fields.keys() - COLUMNS
        if unknown:
            raise ValueError(f"not a column of a job's state: {sorted(unknown)}")


@dataclass(frozen=True)
class Refusal:
    """A happening the job's state does not allow: answered 409 with `code`."""

    code: str
    message: str


@dataclass(frozen=True)
class Reported:
    """A sender's callback: its status word and what it says."""

    word: str
    progress: int | None = None
    result: Any = None
    error: Any = None
    message: str | None = None
    user_id: str | None = None  # the application's user the sender names


@dataclass(frozen=True)
class DispatchAccepted:
    """n8n (or the route) answered 2xx."""


@dataclass(frozen=True)
class DispatchRetrying:
    """A transient failure with attempts left: the next one is due at `next_attempt_at`."""

    next_attempt_at: datetime


@dataclass(frozen=True)
class DispatchGaveUp:
    """Transient failures until the retry schedule ran out; `error` says so."""

    error: str


@dataclass(frozen=True)
class DispatchRefused:
    """A failure retrying cannot help (a 4xx, nowhere to send it)."""

    error: str


@dataclass(frozen=True)
class TimedOut:
    """The watchdog: nothing heard of the job for JOB_STALE_AFTER seconds."""


@dataclass(frozen=True)
class Cancel:
    """POST /api/jobs/<id>/cancel."""


@dataclass(frozen=True)
class Retry:
    """POST /api/jobs/<id>/retry (and the admins' bulk retry)."""


@dataclass(frozen=True)
class Assign:
    """PATCH /api/jobs/<id>: the job goes to `user_id` (None: to nobody)."""

    user_id: str | None


Happening = (
    Reported | DispatchAccepted | DispatchRetrying | DispatchGaveUp | DispatchRefused
    | TimedOut | Cancel | Retry | Assign
)


def created(source: str, owned: bool, now: datetime) -> Change:
    """A new job: made here (`api`, `action`), it waits for its dispatch, due now; made from a
    sender's callback (`callback`), the sender is already at work: dispatched, never sent by
    us, but watched. Admins hear of a job that came without an owner."""
    fields: dict[str, Any] = {"status": PENDING, "progress": 0, "attempts": 0, "next_attempt_at": now}
    if source == "callback":
        fields = {"status": DISPATCHED, "progress": 0, "attempts": 0}
    return Change(fields, notice=None if owned else JOB_UNASSIGNED, at=now)


def decide(state: State, happening: Happening, now: datetime) -> Change | Refusal:
    """What `happening` does to a job in `state`, at `now`."""
    if isinstance(happening, Reported):
        return _reported(state, happening, now)
    if isinstance(happening, (DispatchAccepted, DispatchRetrying, DispatchGaveUp, DispatchRefused)):
        return _dispatched(state, happening, now)
    if isinstance(happening, TimedOut):
        if state.status not in WATCHED:
            return Refusal("not_watched", f"only dispatched or running jobs time out; this one is {state.status}")
        return _change(state, now, status=FAILED, failed_by=BY_WATCHDOG, error=TIMED_OUT_ERROR, completed_at=now)
    if isinstance(happening, Cancel):
        if state.status in TERMINAL:
            return Refusal("not_cancellable", f"the job is already {state.status}")
        return _change(state, now, status=CANCELLED, completed_at=now, next_attempt_at=None)
    if isinstance(happening, Retry):
        if state.status not in (FAILED, CANCELLED):
            return Refusal("not_retryable", f"only failed or cancelled jobs are retried; this one is {state.status}")
        # A new attempt gets the whole retry schedule again, from a clean slate.
        return _change(state, now, status=PENDING, phase=None, progress=0, error=None, failed_by=None,
                       completed_at=None, attempts=0, next_attempt_at=now)
    if isinstance(happening, Assign):
        return Change(owner=happening.user_id, at=now)
    raise TypeError(f"not a happening: {happening!r}")


def _change(state: State, now: datetime, owner: Any = KEEP, said: str | None = None, **fields) -> Change:
    """A Change of `fields`; a transition into succeeded or failed earns the owner's notification."""
    status = fields.get("status", state.status)
    notice = _OUTCOMES.get(status) if status != state.status else None
    return Change(fields, owner=owner, notice=notice, said=said if notice else None, at=now)


def _reported(state: State, cb: Reported, now: datetime) -> Change:
    # A callback naming a user gives an unassigned job its owner, whatever its status.
    owner = cb.user_id if cb.user_id and not state.owned else KEEP
    target = canonical(cb.word)
    said = _sender_words(cb)
    if state.status in TERMINAL:
        # Terminal stays terminal, except that the sender's own success beats a failure
        # we declared ourselves (dispatch gave up, or the watchdog timed it out).
        if not (target == SUCCEEDED and state.status == FAILED and state.failed_by in OWN_SIDE_FAILURES):
            return Change(owner=owner, at=now)
    common = {"phase": cb.word, "next_attempt_at": None}
    if target == SUCCEEDED:
        return _change(state, now, owner, said, status=SUCCEEDED, progress=100, result=cb.result, error=None,
                       failed_by=None, completed_at=now, **common)
    # Within one attempt progress never goes back.
    progress = state.progress if cb.progress is None else max(state.progress, cb.progress)
    if target is None:
        # pending/queued: the phase and progress move, the status does not, and neither does
        # a pending job's next dispatch attempt (it would never be sent again).
        return _change(state, now, owner, progress=progress, phase=cb.word)
    if target == FAILED:
        error = cb.error if cb.error is not None else (cb.message or "failed")
        return _change(state, now, owner, said, status=FAILED, progress=progress, error=error, failed_by=BY_SENDER,
                       completed_at=now, **common)
    if target == CANCELLED:
        return _change(state, now, owner, status=CANCELLED, progress=progress, completed_at=now, **common)
    return _change(state, now, owner, status=target, progress=progress, **common)


def _sender_words(cb: Reported) -> str | None:
    """What the sender said of the outcome: its `message`, else its result's `summary` or `message`."""
    said = [cb.message]
    if isinstance(cb.result, dict):
        said += [cb.result.get("summary"), cb.result.get("message")]
    return next((text.strip() for text in said if isinstance(text, str) and text.strip()), None)


def _dispatched(state: State, outcome, now: datetime) -> Change:
    if state.status != PENDING:
        # Cancelled meanwhile, or the sender called back before its answer reached us: the
        # attempt is recorded as it went, the job stays as it is now.
        return Change(at=now)
    if isinstance(outcome, DispatchAccepted):
        return _change(state, now, status=DISPATCHED, next_attempt_at=None)
    if isinstance(outcome, DispatchRetrying):
        return _change(state, now, next_attempt_at=outcome.next_attempt_at)
    return _change(state, now, status=FAILED, failed_by=BY_DISPATCH, error=outcome.error, next_attempt_at=None,
                   completed_at=now)
