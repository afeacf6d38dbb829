"""Model cards: what a version is, what it learned from, how well it does and for whom.

The card is built from the records (version, source run, dataset versions, evaluations,
promotion requests, alias history) as sections of paragraphs, lists and tables, and rendered
as Markdown or as a standalone HTML page.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Card", "Section"]

Block = str | list[str] | tuple[list[str], list[list[str]]]


@dataclass
class Section:
    """A heading and its blocks: a paragraph (str), a list (list[str]), a table (header, rows)."""

    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Card:
    title: str
    sections: list[Section] = field(default_factory=list)

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for section in self.sections:
            out += [f"## {section.title}", ""]
            for block in section.blocks:
                if isinstance(block, str):
                    out += [block, ""]
                elif isinstance(block, list):
                    out += [f"- {item}" for item in block] + [""]
                else:
                    header, rows = block
                    out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
                    out.append("|" + "---|" * len(header))
                    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
                    out.append("")
        return "\n".join(out).rstrip() + "\n"

    def html(self) -> str:
        e = html.escape
        parts = [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{e(self.title)}</title>",
            "<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
            "padding:0 1rem;color:#222}table{border-collapse:collapse;margin:.5rem 0 1rem}"
            "th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}"
            "th{background:#f3f3f3}code{background:#f3f3f3;padding:0 .2rem}</style>",
            "</head><body>",
            f"<h1>{e(self.title)}</h1>",
        ]
        for section in self.sections:
            parts.append(f"<h2>{e(section.title)}</h2>")
            for block in section.blocks:
                if isinstance(block, str):
                    parts.append(f"<p>{e(block)}</p>")
                elif isinstance(block, list):
                    parts.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in block) + "</ul>")
                else:
                    header, rows = block
                    head = "".join(f"<th>{e(h)}</th>" for h in header)
                    body = "".join(
                        "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows
                    )
                    parts.append(
                        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                    )
        parts.append("</body></html>")
        return "\n".join(parts) + "\n"


def _md_cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def fmt(value: Any) -> str:
    """Format a value for a card cell: 4 significant digits for floats, '-' for None."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
