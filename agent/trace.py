"""`python -m agent.trace RUN_DIR [--out FILE]`: one self-contained HTML page of what a run did, from its trace.

The page (RUN_DIR/trace.html by default) has sections with stable ids: summary, timeline, planner, tools,
critiques, masks, costs. It loads nothing from outside itself (inline CSS, thumbnails as data URIs, no script; a
Content-Security-Policy says so to the browser too) and every string from the trace or result.json is escaped, since
captions and LLM answers are untrusted text. A run without result.json (a failed run) still renders what its trace
has, with the failure on top. Exit codes: 0 page written; 2 no such run folder or no trace.jsonl in it (one line on
stderr); 1 the page could not be written. The sections are rendered in agent/trace_sections.py from the run as
agent/trace_run.py reads it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from agent.trace_run import RunData, Thumbs, load_run_data
from agent.trace_sections import (
    render_costs,
    render_critiques,
    render_masks,
    render_planner,
    render_summary,
    render_timeline,
    render_tools,
)
from tools.cli import ArgumentParser
from tools.htmltext import as_dict, esc
from tools.runfiles import write_text_atomic

# The browser is told too: nothing but inline styles and data: images, so even a missed escape could run nothing.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

Section = Callable[[RunData, Thumbs], str]
SECTIONS: tuple[tuple[str, str, Section], ...] = (
    ("summary", "Summary", render_summary),
    ("timeline", "Timeline", render_timeline),
    ("planner", "Planner", render_planner),
    ("tools", "Tool calls", render_tools),
    ("critiques", "Critiques", render_critiques),
    ("masks", "Masks", render_masks),
    ("costs", "Costs", render_costs),
)

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 3em;color:#222;background:#fafafa}
nav{position:sticky;top:0;background:#fafafa;padding:.5em 0;border-bottom:1px solid #ddd;z-index:1}
nav a{margin-right:1em}
section{margin-top:1.5em}
h2{border-bottom:2px solid #4c78a8;padding-bottom:.2em}
table{border-collapse:collapse;margin:.4em 0}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
table.facts th{display:none}
pre{background:#f0f0f0;padding:6px;white-space:pre-wrap;word-break:break-word;max-height:30em;overflow:auto;
margin:.2em 0}
.banner{padding:.6em 1em;margin:.6em 0;font-weight:bold;border-radius:4px}
.bad{background:#fbe3e3;color:#900}.ok{background:#e3f5e3;color:#060}.warn{background:#fff3d6;color:#850}
.badge{padding:0 .4em;border-radius:3px}
.error,.kind.err{color:#b00}
.empty{color:#777;font-style:italic}
.item{background:#fff;border:1px solid #ddd;border-radius:4px;padding:.4em .8em;margin:.5em 0}
.item>summary{cursor:pointer}
.msg{border-left:3px solid #4c78a8;padding-left:.5em;margin:.4em 0}.role{font-weight:bold;color:#4c78a8}
.thumbs,.row{display:flex;flex-wrap:wrap;gap:.6em;align-items:flex-start}
figure.thumb{margin:0;font-size:12px;color:#555}
figure.thumb img{display:block;max-width:160px;max-height:160px;border:1px solid #ccc}
figure.missing div{width:120px;height:60px;background:#eee;display:flex;align-items:center;justify-content:center}
.bar{position:relative;width:240px;height:10px;background:#eee}
.bar span{position:absolute;top:0;bottom:0;background:#4c78a8}
.swatch{display:inline-block;width:12px;height:12px;border:1px solid #555}
.frame{background:#fff;border:1px solid #ddd;border-radius:4px;padding:.4em .8em;margin:.5em 0}
.score{font-weight:bold}
"""


def render_section(section_id: str, title: str, render: Section, data: RunData, thumbs: Thumbs) -> str:
    """One section; a section that fails on odd data says so instead of costing the whole page."""
    try:
        body = render(data, thumbs)
    except Exception as err:
        body = f'<p class="error">this section could not be rendered: {esc(f"{type(err).__name__}: {err}")}</p>'
    return f'<section id="{section_id}"><h2>{title}</h2>{body}</section>'


def render_page(run_dir: Path) -> str:
    """The whole page for a run folder that has a trace.jsonl."""
    data = load_run_data(run_dir)
    thumbs = Thumbs(run_dir)
    name = as_dict(as_dict(data.result).get("clip")).get("name") or run_dir.name
    nav = "".join(f'<a href="#{sid}">{title}</a>' for sid, title, _ in SECTIONS)
    sections = "".join(render_section(sid, title, fn, data, thumbs) for sid, title, fn in SECTIONS)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>run trace: {esc(name)}</title><style>{CSS}</style></head>"
        f"<body><h1>Run trace: {esc(name)}</h1><nav>{nav}</nav>{sections}</body></html>\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m agent.trace", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run folder written by python -m agent.solve")
    parser.add_argument("--out", help="the page to write (default: RUN_DIR/trace.html)")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        what = "a file, not a run folder" if run_dir.exists() else "no such run folder"
        print(f"error: {run_dir}: {what}", file=sys.stderr)
        return 2
    if not (run_dir / "trace.jsonl").is_file():
        print(f"error: {run_dir}: no trace.jsonl there, so it is not a run folder", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else run_dir / "trace.html"
    try:
        write_text_atomic(out, render_page(run_dir))
    except OSError as err:
        print(f"error: cannot write {out}: {err}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
