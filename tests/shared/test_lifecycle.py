"""The job lifecycle: status words, terminal states, monotonic progress."""

import pytest

from shared import lifecycle as lc


@pytest.mark.parametrize(
    "word, status",
    [("queued", None), ("PENDING", None), ("initializing", lc.RUNNING), ("saving", lc.RUNNING),
     ("completed", lc.SUCCEEDED), ("done", lc.SUCCEEDED), ("error", lc.FAILED), ("canceled", lc.CANCELLED)],
)
def test_words_map_to_canonical_statuses(word, status):
    assert lc.canonical(word) == status


def test_unknown_word_is_not_known():
    assert not lc.is_known_word("exploded")


def test_progress_never_decreases_within_an_attempt():
    t = lc.decide(lc.RUNNING, None, 60, "generating", 40)
    assert (t.status, t.progress) == (lc.RUNNING, 60)


def test_succeeded_sets_100():
    assert lc.decide(lc.RUNNING, None, 40, "completed", None).progress == 100


def test_terminal_stays_terminal():
    assert not lc.decide(lc.SUCCEEDED, None, 100, "generating", 50).applies
    assert not lc.decide(lc.CANCELLED, None, 10, "succeeded", 100).applies
    assert not lc.decide(lc.FAILED, "sender", 10, "succeeded", 100).applies


@pytest.mark.parametrize("failed_by", ["dispatch", "watchdog"])
def test_sender_success_beats_our_own_failure(failed_by):
    t = lc.decide(lc.FAILED, failed_by, 0, "succeeded", None)
    assert (t.status, t.progress) == (lc.SUCCEEDED, 100)


def test_queued_keeps_status_but_moves_progress():
    t = lc.decide(lc.DISPATCHED, None, 0, "queued", 5)
    assert (t.status, t.progress) == (lc.DISPATCHED, 5)
