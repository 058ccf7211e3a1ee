"""The report page: one HTML file with its figures inlined as base64 PNG and its style inline.

Every piece of user text (file names, errors, config values, run ids) goes through
html.escape here, and nothing else writes markup. The page's Content-Security-Policy allows
only inline styles and data: images, so a browser opening it makes no request at all: a page
that needed the network would show its failure, not depend on it silently.
"""
from __future__ import annotations

import base64
import json
from html import escape
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; } th { background: #f4f4f4; }
td.err { max-width: 520px; word-break: break-word; font-family: monospace; font-size: 12px; }
img { max-width: 100%; height: auto; display: block; margin: .5em 0; }
.note { background: #fff8e1; border-left: 4px solid #ffb300; padding: .4em .8em; margin: .5em 0; }
.empty { color: #777; font-style: italic; } pre { background: #f6f8fa; padding: .8em; overflow-x: auto; }
.meta { color: #555; } details { margin: .4em 0; }
"""
Column = tuple[str, str, Callable[[Any], str] | None]  # key, heading, how to print a value (None: as text)


def figure(name: str, data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return (f'<figure id="fig-{escape(name)}"><img src="data:image/png;base64,{encoded}" alt="{escape(alt)}" '
            f'data-figure="{escape(name)}"></figure>')


def paragraph(text: str, css: str | None = None) -> str:
    return f'<p class="{css}">{escape(text)}</p>' if css else f"<p>{escape(text)}</p>"


def empty(text: str) -> str:
    return paragraph(text, "empty")


def note(text: str) -> str:
    return f'<div class="note">{escape(text)}</div>'


def code(obj: Any) -> str:
    return f"<pre>{escape(json.dumps(obj, indent=2, default=str, sort_keys=True))}</pre>"


def preformatted(text: str) -> str:
    return f"<pre>{escape(text)}</pre>"


def details(summary: str, body: str) -> str:
    return f"<details><summary>{escape(summary)}</summary>{body}</details>"


def table(rows: Iterable[dict] | pd.DataFrame, columns: Sequence[Column]) -> str:
    if isinstance(rows, pd.DataFrame):
        rows = rows.to_dict("records")
    titles = "".join(f"<th>{escape(title)}</th>" for _, title, _ in columns)
    head = f"<thead><tr>{titles}</tr></thead>" if any(title for _, title, _ in columns) else ""
    body = []
    for row in rows:
        cells = []
        for key, _, show in columns:
            value = row.get(key)
            text = "" if _missing(value) else (show(value) if show else str(value))
            css = ' class="n"' if show in NUMERIC else (' class="err"' if key == "error" else "")
            cells.append(f"<td{css}>{escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>{head}<tbody>{''.join(body)}</tbody></table>"


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or dict: present
        return False


def integer(value: Any) -> str:
    return f"{int(value):,}"


def decimal(value: Any) -> str:
    return f"{float(value):,.2f}"


def share(value: Any) -> str:
    return f"{float(value):.1%}"


def clip(limit: int) -> Callable[[Any], str]:
    """Long errors (tracebacks) are cut so that one row cannot bury the table."""
    return lambda value: str(value) if len(str(value)) <= limit else str(value)[:limit] + " …"


NUMERIC = (integer, decimal, share)


def page(title: str, meta: Sequence[str], sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole document; `sections` are (anchor, heading, body markup built by the helpers above)."""
    contents = "".join(f'<li><a href="#{escape(a)}">{escape(h)}</a></li>' for a, h, _ in sections)
    body = "".join(f'<section id="{escape(a)}"><h2>{escape(h)}</h2>{b}</section>' for a, h, b in sections)
    lines = "".join(f'<div class="meta">{escape(m)}</div>' for m in meta)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
            f"<body><h1>{escape(title)}</h1>{lines}<nav><ul>{contents}</ul></nav>{body}</body></html>\n")
