"""Sample files and an Atom feed builder for the JMA tests."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

SAMPLES = Path(__file__).resolve().parent / "samples"


def sample(name: str) -> bytes:
    """The bytes of ``tests/central/jma/samples/<name>``."""
    return (SAMPLES / name).read_bytes()


def atom_feed(entries: list[tuple[str, str, str, str]], feed_id: str = "urn:test:extra") -> bytes:
    """An Atom feed like JMA's extra.xml; entries are (title, id, updated ISO, link href)."""
    parts = ['<?xml version="1.0" encoding="utf-8"?>',
             '<feed xmlns="http://www.w3.org/2005/Atom" lang="ja">',
             "<title>高頻度（随時）</title><subtitle>JMAXML publishing feed</subtitle>",
             f"<updated>2026-09-15T06:20:00Z</updated><id>{escape(feed_id)}</id>"]
    for title, entry_id, updated, href in entries:
        parts.append(f"<entry><title>{escape(title)}</title><id>{escape(entry_id)}</id><updated>{updated}</updated>"
                     f"<author><name>鳥取地方気象台</name></author>"
                     f'<link type="application/xml" href="{escape(href)}"/>'
                     f'<content type="text">【鳥取県気象警報・注意報】</content></entry>')
    parts.append("</feed>")
    return "\n".join(parts).encode("utf-8")
