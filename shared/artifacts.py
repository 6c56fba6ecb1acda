"""What AI backends produce (images, books): stored once per job, shown as `artifacts`."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.orm import Session

from shared.models import Book, BookChapter, JobImage, utcnow
from shared.schemas import DIMENSIONS

_DIMENSIONS = re.compile(DIMENSIONS)  # what the image-completion schema accepts, no more


def parse_dimensions(value: str | None) -> tuple[int | None, int | None]:
    """`"1024x768"` -> (1024, 768); anything else -> (None, None)."""
    match = _DIMENSIONS.fullmatch(value or "")
    return (int(match.group(1)), int(match.group(2))) if match else (None, None)


def has_artifacts(session: Session, job_id: str) -> bool:
    return bool(
        session.scalar(select(JobImage.id).where(JobImage.job_id == job_id).limit(1))
        or session.scalar(select(Book.id).where(Book.job_id == job_id))
    )


def store(session: Session, job_id: str, artifacts: dict) -> bool:
    """Store a completion's images or book unless the job already has some (caller holds the job's lock)."""
    if has_artifacts(session, job_id):
        return False  # redelivered, or re-sent with other bytes: the first completion stands
    now = utcnow()
    if "images" in artifacts:
        meta = artifacts.get("metadata") or {}
        for position, image in enumerate(artifacts["images"]):
            width, height = parse_dimensions(image.get("dimensions"))
            session.add(
                JobImage(
                    job_id=job_id,
                    position=position,
                    url=image.get("url"),
                    file_path=image.get("file_path"),
                    description=image.get("description"),
                    format=image.get("format"),
                    size_bytes=image.get("size_bytes"),
                    width=width,
                    height=height,
                    model=_text(meta.get("model_name")),
                    generation_seconds=_number(meta.get("generation_time_seconds")),
                    created_at=now,
                )
            )
    if "book" in artifacts:
        data = artifacts["book"]
        chapters = data.get("chapters") or []
        book = Book(
            job_id=job_id,
            title=data["book_title"],
            topic=data.get("topic"),
            goal=data.get("goal"),
            outline=data.get("outline"),
            word_count=data.get("word_count"),
            chapter_count=len(chapters),
            created_at=now,
        )
        book.chapters = [
            BookChapter(position=n, title=c.get("title"), description=c.get("description"), content=c.get("content"))
            for n, c in enumerate(chapters, start=1)
        ]
        session.add(book)
    session.flush()
    return True


def _text(value: Any) -> str | None:
    return str(value)[:255] if value is not None else None


def _number(value: Any) -> float | None:
    """A metadata number as a float column takes it; None for anything else, as for an integer
    beyond double range (JSON allows it, float() raises on it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def image_view(image) -> dict:
    """A JobImage, or a row of its table."""
    return {
        "url": image.url,
        "file_path": image.file_path,
        "description": image.description,
        "format": image.format,
        "size_bytes": image.size_bytes,
        "width": image.width,
        "height": image.height,
        "model": image.model,
        "generation_time_seconds": image.generation_seconds,
    }


def book_view(book, chapters) -> dict:
    """A Book (or a row of its table) and its chapters (objects or rows), in order."""
    return {
        "title": book.title,
        "topic": book.topic,
        "goal": book.goal,
        "outline": book.outline,
        "word_count": book.word_count,
        "chapter_count": book.chapter_count,
        "chapters": [
            {"position": c.position, "title": c.title, "description": c.description, "content": c.content}
            for c in chapters
        ],
    }


# Built once: a poll that shows a job reads its artifacts with these, as plain rows.
_IMAGES = (
    select(JobImage.__table__)
    .where(JobImage.job_id.in_(bindparam("job_ids", expanding=True)))
    .order_by(JobImage.job_id, JobImage.position)
)
_BOOKS = select(Book.__table__).where(Book.job_id.in_(bindparam("job_ids", expanding=True)))
_CHAPTERS = (
    select(BookChapter.__table__)
    .where(BookChapter.book_id.in_(bindparam("book_ids", expanding=True)))
    .order_by(BookChapter.book_id, BookChapter.position)
)


def for_jobs(db: Session | Connection, job_ids: list[str]) -> dict[str, dict]:
    """The `artifacts` of each job: two queries whatever the number of jobs, three with books."""
    found: dict[str, dict] = {job_id: {} for job_id in job_ids}
    if not job_ids:
        return found
    for image in db.execute(_IMAGES, {"job_ids": job_ids}):
        found[image.job_id].setdefault("images", []).append(image_view(image))
    books = db.execute(_BOOKS, {"job_ids": job_ids}).all()
    if books:
        chapters: dict[int, list] = {book.id: [] for book in books}
        for chapter in db.execute(_CHAPTERS, {"book_ids": list(chapters)}):
            chapters[chapter.book_id].append(chapter)
        for book in books:
            found[book.job_id]["book"] = book_view(book, chapters[book.id])
    return found


def summary(session: Session, job_id: str) -> dict:
    """What a notification says of a job's artifacts: image count, or the book's chapters."""
    images = session.scalar(select(func.count()).select_from(JobImage).where(JobImage.job_id == job_id))
    if images:
        return {"images_count": images}
    book = session.execute(select(Book.title, Book.chapter_count).where(Book.job_id == job_id)).first()
    if book:
        return {"book_title": book.title, "chapter_count": book.chapter_count}
    return {}
