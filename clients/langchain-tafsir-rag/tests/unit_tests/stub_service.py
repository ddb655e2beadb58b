"""A loopback stand-in for the service, and one passage as the service sends it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# One passage as `tafsir serve` sends it (interfaces/http/schemas.py, Document).
PASSAGE = {
    "id": "5b0f2c5e-0d1c-5a34-9a53-2f0e3b1d6a01",
    "text": "(Katakanlah, Dialah Allah Yang Maha Esa).",
    "citation": "QS Al-Ikhlas [112]: 1",
    "score": 0.5,
    "metadata": {
        "surah": 112,
        "surah_name": "Al-Ikhlas",
        "ayah": 1,
        "chunk": 0,
        "chunks": 1,
        "edition": "id.jalalayn",
        "translation": "Katakanlah (Muhammad), Dialah Allah, Yang Maha Esa.",
        "arabic": "قُلْ هُوَ اللّٰهُ اَحَدٌۚ",
        "context_for": None,
        "also_in": [],
    },
}


@dataclass
class Reply:
    status: int
    body: Any
    delay: float = 0.0


@dataclass
class StubService:
    """A loopback HTTP server answering with the replies a test queues, one a request, and recording each
    request: for what a real service cannot be made to do on demand (a 503, a slow answer)."""

    url: str = ""
    replies: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def reply(self, status: int, body: Any, delay: float = 0.0) -> None:
        self.replies.append(Reply(status, body, delay))
