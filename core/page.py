"""A report page, written twice from one list of blocks: a self-contained HTML page and the same in Markdown.

The page opens offline: plotly.js is inlined once (only when a block is a plotly figure), PNG figures are base64
data URLs, and nothing else is loaded. Text is a small Markdown subset (headings, pipe tables, fenced code,
**bold** and `code`), which is what the study's and the comparison's Markdown already use; the HTML page renders
it here, escaping everything, so a user-given name never becomes markup.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from core.names import safe_name
from core.store_dir import store_dir

FOLDER = "reports"  # under the store: mlruns/reports/<name>.html and .md


@dataclass(frozen=True)
class Text:
    markdown: str


@dataclass(frozen=True)
class Figure:
    """A plotly figure (`plotly_json`, from figure.to_json()) or a PNG image (`png`)."""

    title: str
    plotly_json: str = ""
    png: bytes = b""


def folder() -> Path:
    return store_dir() / FOLDER


def page_paths(name: str) -> tuple[Path, Path]:
    """Where the page of a study or comparison named `name` is written: (html, md)."""
    stem = folder() / safe_name(name)
    return stem.with_suffix(".html"), stem.with_suffix(".md")


def existing_page(name: str) -> str:
    """The HTML page of `name` when one was written, else ""."""
    path = page_paths(name)[0]
    return str(path) if path.is_file() else ""


def write(name: str, title: str, blocks: list[Text | Figure]) -> tuple[Path, Path]:
    """Both pages, written whole to a temporary file and moved in (a reader never sees half a page)."""
    html_path, md_path = page_paths(name)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    for path, text in ((html_path, to_html(title, blocks)), (md_path, to_markdown(title, blocks, html_path.name))):
        partial = path.with_name(path.name + ".partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
    return html_path, md_path


def to_markdown(title: str, blocks: list[Text | Figure], html_name: str) -> str:
    parts = [f"# {title}"]
    for block in blocks:
        if isinstance(block, Text):
            parts.append(block.markdown)
        elif block.png:
            parts.append(f"![{block.title}](data:image/png;base64,{base64.b64encode(block.png).decode()})")
        else:
            parts.append(f"*{block.title}: an interactive figure, in {html_name}*")
    return "\n\n".join(parts) + "\n"


TEMPLATE = jinja2.Environment(autoescape=True).from_string("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; \
script-src 'unsafe-inline' 'unsafe-eval'">
<style>
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 1.5em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; display: block; max-width: 100%;
  overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; } pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1em 0; } summary { cursor: pointer; color: #555; }
figcaption { font-weight: 600; margin-bottom: 0.3em; }
.plot { width: 100%; min-height: 480px; } img { max-width: 100%; }
</style>
{% if plotly_js %}<script>{{ plotly_js }}</script>{% endif %}
</head><body><h1>{{ title }}</h1>
{% for block in blocks %}{% if block.html is defined %}{{ block.html }}{% else %}<figure><figcaption>{{ block.title }}
</figcaption>{% if block.png %}<img alt="{{ block.title }}" src="data:image/png;base64,{{ block.png }}">
{% else %}<div class="plot" id="plot-{{ loop.index }}"></div><script>(function () {
var figure = {{ block.figure }};
Plotly.newPlot("plot-{{ loop.index }}", figure.data, figure.layout, {responsive: true});
})();</script>{% endif %}</figure>{% endif %}
{% endfor %}</body></html>
""")


def to_html(title: str, blocks: list[Text | Figure]) -> str:
    shown = []
    for block in blocks:
        if isinstance(block, Text):
            shown.append({"html": markdown_html(block.markdown)})
        else:
            figure = block.plotly_json.replace("<", "\\u003c")  # no "</script>" inside the script
            shown.append({"title": block.title, "png": base64.b64encode(block.png).decode(),
                          "figure": _Raw(figure)})
    plotly_js = ""
    if any(isinstance(block, Figure) and not block.png for block in blocks):
        from plotly.offline import get_plotlyjs  # the installed plotly's own copy: the page needs no network

        plotly_js = _Raw(get_plotlyjs().replace("</script", "<\\/script"))
    return TEMPLATE.render(title=title, blocks=shown, plotly_js=plotly_js)


class _Raw(str):
    """Text the template puts in as it is: HTML made here from escaped parts, or JSON and JavaScript."""

    def __html__(self) -> str:
        return str(self)


def markdown_html(text: str) -> _Raw:
    """The Markdown subset our pages are written in, as HTML; every piece of text escaped."""
    out: list[str] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("```"):
            end = next((i for i in range(index + 1, len(lines)) if lines[i].startswith("```")), len(lines))
            out.append(_code(lines[index + 1:end]))
            index = end + 1
        elif line.startswith("|"):
            end = next((i for i in range(index, len(lines)) if not lines[i].startswith("|")), len(lines))
            out.append(_table(lines[index:end]))
            index = end
        else:
            heading = re.match(r"(#{1,6}) (.*)", line)
            if heading:
                level = min(len(heading.group(1)) + 1, 6)  # the page's title is the one h1
                out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            elif line.strip():
                out.append(f"<p>{_inline(line)}</p>")
            index += 1
    return _Raw("\n".join(out))


FOLDED_LINES = 20  # a longer code block (the spec) is folded: a click shows it, the sections after it stay in view


def _code(lines: list[str]) -> str:
    block = f"<pre>{html.escape(chr(10).join(lines))}</pre>"
    if len(lines) <= FOLDED_LINES:
        return block
    return f"<details><summary>{len(lines)} lines</summary>{block}</details>"


def _table(rows: list[str]) -> str:
    cells = [_cells(row) for row in rows if not re.fullmatch(r"\|[\s:|-]*", row)]
    if not cells:
        return ""
    head = "".join(f"<th>{_inline(cell)}</th>" for cell in cells[0])
    body = "".join("<tr>" + "".join(f"<td>{_inline(cell)}</td>" for cell in row) + "</tr>" for row in cells[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cells(row: str) -> list[str]:
    """A pipe-table row's cells; `\\|` is a pipe inside a cell (markdown_cell writes it so)."""
    row = row.strip().removeprefix("|")
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    parts = re.split(r"(?<!\\)\|", row)
    return [part.strip().replace("\\|", "|") for part in parts]


def _inline(text: str) -> str:
    """`code` and **bold**, the rest escaped (a trailing two-space line break is dropped; entities, as markdown_cell
    writes them, are read as the characters they stand for)."""
    escaped = html.escape(html.unescape(text.rstrip()))
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def markdown_cell(value: object) -> str:
    """A user-given value as one pipe-table cell: pipes escaped, line breaks made spaces, and no markup where a
    Markdown viewer would render HTML (<, > and & as entities)."""
    return html.escape(str(value), quote=False).replace("|", "\\|").replace("\n", " ")


def json_block(value: object) -> str:
    """A fenced block of JSON (what a section shows of a structure it has no table for)."""
    return "```json\n" + json.dumps(value, indent=2, sort_keys=True) + "\n```"
