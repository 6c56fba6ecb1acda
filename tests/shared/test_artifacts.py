"""shared/artifacts.py: a completion's images or book stored once per job, read back in order."""

import uuid

import pytest
from sqlalchemy import func, select

from shared import artifacts
from shared.models import Book, Job, JobImage


@pytest.fixture
def job(session):
    row = Job(id=f"art-{uuid.uuid4().hex}", job_type="image_generation", status="running", source="callback")
    session.add(row)
    session.flush()
    return row.id


IMAGES = {
    "images": [
        {"url": "https://cdn.example/a.png", "format": "png", "size_bytes": 1024, "dimensions": "1024x768"},
        {"file_path": "/out/b.jpg", "description": "second", "dimensions": " 640 × 480 "},
    ],
    "metadata": {"model_name": "sdxl", "generation_time_seconds": 12.5},
}


def test_images_are_stored_in_order_with_their_dimensions_and_metadata(session, job):
    assert artifacts.store(session, job, IMAGES) is True
    assert artifacts.for_jobs(session, [job]) == {job: {"images": [
        {"url": "https://cdn.example/a.png", "file_path": None, "description": None, "format": "png",
         "size_bytes": 1024, "width": 1024, "height": 768, "model": "sdxl", "generation_time_seconds": 12.5},
        {"url": None, "file_path": "/out/b.jpg", "description": "second", "format": None,
         "size_bytes": None, "width": 640, "height": 480, "model": "sdxl", "generation_time_seconds": 12.5},
    ]}}
    assert artifacts.summary(session, job) == {"images_count": 2}


def test_a_second_completion_leaves_the_first_one_standing(session, job):
    assert artifacts.store(session, job, IMAGES) is True
    other = {"images": [{"url": "https://cdn.example/other.png"}], "metadata": {}}
    assert artifacts.store(session, job, other) is False
    assert artifacts.store(session, job, {"book": {"book_title": "Late", "chapters": []}}) is False
    urls = session.scalars(select(JobImage.url).where(JobImage.job_id == job).order_by(JobImage.position)).all()
    assert urls == ["https://cdn.example/a.png", None]
    assert session.scalar(select(func.count()).select_from(Book).where(Book.job_id == job)) == 0


def test_a_book_keeps_its_chapters_in_the_order_sent(session, job):
    chapters = [{"title": f"Chapter {n}", "content": f"text {n}"} for n in (3, 1, 2, 10)]
    book = {"book_title": "Rivers", "topic": "water", "word_count": 900, "outline": ["a", "b"], "chapters": chapters}
    assert artifacts.store(session, job, {"book": book}) is True
    shown = artifacts.for_jobs(session, [job])[job]["book"]
    assert [(c["position"], c["title"]) for c in shown["chapters"]] == [
        (1, "Chapter 3"), (2, "Chapter 1"), (3, "Chapter 2"), (4, "Chapter 10")]
    assert (shown["title"], shown["chapter_count"], shown["word_count"], shown["outline"]) == (
        "Rivers", 4, 900, ["a", "b"])
    assert artifacts.summary(session, job) == {"book_title": "Rivers", "chapter_count": 4}


def test_a_job_without_artifacts_shows_none(session, job):
    assert artifacts.summary(session, job) == {}
    assert artifacts.for_jobs(session, [job]) == {job: {}}
    assert artifacts.for_jobs(session, []) == {}


def test_artifacts_of_several_jobs_are_each_their_own(session, job):
    other = Job(id=f"art-{uuid.uuid4().hex}", job_type="book_generation", status="running", source="callback")
    session.add(other)
    session.flush()
    artifacts.store(session, job, IMAGES)
    artifacts.store(session, other.id, {"book": {"book_title": "B", "chapters": [{"title": "only"}]}})
    found = artifacts.for_jobs(session, [job, other.id])
    assert [image["width"] for image in found[job]["images"]] == [1024, 640]
    assert "book" not in found[job]
    assert found[other.id]["book"]["chapters"] == [
        {"position": 1, "title": "only", "description": None, "content": None}]
    assert "images" not in found[other.id]


def test_metadata_a_column_cannot_hold_is_dropped_not_refused(session, job):
    # JSON allows an integer beyond double range and any type for these keys.
    completion = {"images": [{"url": "u"}], "metadata": {"model_name": "x" * 300, "generation_time_seconds": 10**400}}
    assert artifacts.store(session, job, completion) is True
    image = artifacts.for_jobs(session, [job])[job]["images"][0]
    assert image["generation_time_seconds"] is None
    assert image["model"] == "x" * 255


@pytest.mark.parametrize("value, expected", [
    ("1024x768", (1024, 768)),
    ("1024X768", (1024, 768)),
    (" 800 × 600 ", (800, 600)),
    ("999999x1", (999999, 1)),
    ("1000000x1", (None, None)),   # seven digits: no integer column is asked to hold more
    ("١٠٢٤x768", (None, None)),     # Arabic-Indic digits are digits to \d, not to the schema
    ("1024x768x2", (None, None)),
    ("1024*768", (None, None)),
    ("", (None, None)),
    (None, (None, None)),
])
def test_dimensions_are_read_as_the_schema_accepts_them(value, expected):
    assert artifacts.parse_dimensions(value) == expected
