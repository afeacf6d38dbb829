"""Model cards as Markdown: what users wrote shows as text in a Markdown renderer, the card's
own headings, lists and tables still render."""

from __future__ import annotations

import pytest

from conveyor.models.cards import Card, Section

markdown_it = pytest.importorskip("markdown_it", reason="markdown-it-py comes with rich")

HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(2)>",
    "[click](javascript:alert(3))",
    "![pixel](https://tracker.example/p.png)",
    "<javascript:alert(4)>",
    "\\[escaped\\](javascript:alert(5))",
    "&lt;b&gt; & a\\b",
]


def render(text: str) -> str:
    """HTML from a CommonMark renderer that passes raw HTML through (GitHub-style tables on)."""
    return markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(text)


def hostile_card() -> Card:
    section = Section("Overview <b>")
    section.blocks += [*HOSTILE, list(HOSTILE), (["column", "<u>"], [[h, h] for h in HOSTILE])]
    return Card("Model card: churn/1", [section])


def test_what_users_wrote_renders_as_text_not_markup() -> None:
    page = render(hostile_card().markdown())
    for markup in ("<script", "<img", "<a ", "<b>", "<u>"):
        assert markup not in page, markup


def test_what_users_wrote_reads_back_exactly_as_written() -> None:
    import html
    import re

    for text in HOSTILE:
        page = render(Card("t", [Section("s", [text])]).markdown())
        paragraph = re.search(r"<p>(.*)</p>", page, re.S)
        assert paragraph is not None, page
        assert html.unescape(paragraph.group(1)) == text


def test_the_cards_own_headings_lists_and_tables_still_render() -> None:
    page = render(hostile_card().markdown())
    assert "<h1>Model card: churn/1</h1>" in page
    assert "<h2>Overview &lt;b&gt;</h2>" in page
    assert page.count("<li>") == len(HOSTILE)
    assert page.count("<tr>") == len(HOSTILE) + 1
    assert "<th>column</th>" in page
