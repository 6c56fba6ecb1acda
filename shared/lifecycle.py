"""The job lifecycle: status words, canonical statuses, allowed transitions, progress rules.

Pure: both the ingress (validation) and the workers (applying) use it.
"""

from __future__ import annotations

from dataclasses import dataclass

PENDING = "pending"
DISPATCHED = "dispatched"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

STATUSES = (PENDING, DISPATCHED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
# Failures decided on our side: a later `succeeded` from the sender overrules them.
OWN_SIDE_FAILURES = frozenset({"dispatch", "watchdog"})

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


@dataclass(frozen=True)
class Transition:
    """What one callback does to a job: a new status (or none) and the progress to show."""

    status: str | None  # None: the callback is recorded as an event only
    progress: int | None

    @property
    def applies(self) -> bool:
        return self.status is not None


def decide(current: str, failed_by: str | None, progress: int, word: str, new_progress: int | None) -> Transition:
    """Decide what a callback with status `word` does to a job in status `current`."""
    target = canonical(word)
    if current in TERMINAL:
        # Terminal stays terminal, except that the sender's own success beats a failure
        # we declared ourselves (dispatch gave up, or the watchdog timed it out).
        if target == SUCCEEDED and current == FAILED and failed_by in OWN_SIDE_FAILURES:
            return Transition(SUCCEEDED, 100)
        return Transition(None, None)
    if target == SUCCEEDED:
        return Transition(SUCCEEDED, 100)
    monotonic = progress if new_progress is None else max(progress, new_progress)
    if target is None:  # pending/queued: the phase and progress move, the status does not
        return Transition(current, monotonic)
    return Transition(target, monotonic)
