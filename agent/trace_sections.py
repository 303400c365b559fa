"""The trace page's sections, one renderer per section id: each takes the run (trace records, result.json) and
the thumbnail maker and returns escaped HTML."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from agent.trace_run import RunData, Thumbs, inside
from tools.datamodel import frame_number
from tools.htmltext import as_dict, as_list, empty, esc, fmt, num, pre, table
from tools.overlay import PALETTE
from tools.rle import decode_rle
from tools.runfiles import read_mask_png
from tools.thumbnails import image_data_uri, overlay_thumbnail

MAX_FIELDS = 4_000  # characters of a record's JSON in the timeline: the full text is in its own section


def round_label(record: dict[str, Any]) -> str:
    return f" · round {esc(record['round'])}" if record.get("round") is not None else ""


def errors_of(data: RunData) -> list[str]:
    """Each error the trace records: error records, and spans that ended with an `error` field."""
    lines = []
    for record in data.records:
        message = record.get("error") or (record.get("message") if record.get("kind") == "error" else None)
        if message or record.get("kind") == "error":
            lines.append(f"{record.get('kind')} {record.get('name')}: {message or '(no message)'}")
    return lines


def warnings_of(data: RunData) -> list[str]:
    found = [str(w) for w in as_list(as_dict(data.result).get("warnings"))]
    found += [str(r.get("message", r.get("key", ""))) for r in data.records if r.get("kind") == "warning"]
    return list(dict.fromkeys(found))  # the same warning is often both traced and kept in the result


def _models_table(data: RunData) -> str:
    if data.result and as_list(data.result.get("models")):
        rows = [
            [esc(m.get("role")), esc(m.get("model_id")), esc(m.get("face")), esc(m.get("dtype")), esc(m.get("commit"))]
            for m in map(as_dict, data.result["models"])
        ]
        return table(["role", "model", "face", "dtype", "commit"], rows)
    rows = [
        [esc(r.get("name")), esc(r.get("model")), esc(r.get("face")), fmt(r.get("ms"), 1)]
        for r in (r for _, r in data.of_kind("model_load"))
    ]
    return table(["role", "model", "face", "load ms"], rows) if rows else empty("no models recorded")


def _status(data: RunData) -> tuple[str, str]:
    """(status text, css class) of the run."""
    end = data.last("run_end")
    if end:
        status = str(end.get("status", "unknown"))
    else:
        status = "failed (no run_end record)" if errors_of(data) else "incomplete (no run_end record)"
    return status, "ok" if status == "ok" else "bad" if status.startswith("failed") else "warn"


def _clip_facts(clip: dict[str, Any]) -> str:
    """Duration, size, frame rate and audio, each only when result.json has it (a failed run has none)."""
    facts = []
    if clip.get("duration_s") is not None:
        facts.append(f"{fmt(clip['duration_s'])} s")
    if clip.get("width") is not None:
        facts.append(f"{fmt(clip['width'])}×{fmt(clip.get('height'))} px")
    if clip.get("fps") is not None:
        facts.append(f"{fmt(clip['fps'])} fps")
    if clip.get("has_audio") is not None:
        facts.append("with audio" if clip["has_audio"] is True else "no audio")
    return ", ".join(facts) or "–"


def render_summary(data: RunData, thumbs: Thumbs) -> str:
    start, end, result = data.first("run_start"), data.last("run_end"), as_dict(data.result)
    settings = as_dict(result.get("settings")) or as_dict(as_dict(data.run_info).get("settings"))
    clip = as_dict(result.get("clip"))
    meaningful = result.get("meaningful", start.get("meaningful", settings.get("meaningful")))
    status, css = _status(data)
    parts = []
    if meaningful is False:
        parts.append('<div class="banner bad">random weights: outputs meaningless</div>')
    if data.result is None:
        errors = "".join(f"<li>{esc(e)}</li>" for e in errors_of(data)) or "<li>no error recorded</li>"
        parts.append(
            '<div class="banner bad">the run failed: no result.json, so there are no final masks; what the trace '
            f'has is shown below<ul class="errors">{errors}</ul></div>'
        )
    source = as_dict(start.get("source")) or as_dict(as_dict(data.run_info).get("source"))
    clip_line = clip.get("path") or source.get("path") or source.get("name")
    clip = clip or {"name": Path(str(clip_line)).stem if clip_line else None}
    rows = [
        ["status", f'<span class="badge {css}">{esc(status)}</span>'],
        ["clip", f"{esc(clip.get('name'))} <code>{esc(clip_line)}</code>"],
        ["clip facts", _clip_facts(clip)],
        ["profile", esc(start.get("profile") or settings.get("profile"))],
        ["device", esc(start.get("device") or result.get("device"))],
        ["meaningful", esc(meaningful)],
        ["translator", esc(as_dict(result.get("translator")).get("name"))],
        ["records", str(len(data.records))],
    ]
    rows += [[esc(k), esc(end[k])] for k in ("best_round", "flagged", "note") if end.get(k) is not None]
    parts.append(table(["", ""], rows, "facts"))
    parts.append(f"<h3>Models</h3>{_models_table(data)}")
    warnings = warnings_of(data) + data.problems
    if warnings:
        parts.append("<h3>Warnings</h3><ul>" + "".join(f"<li>{esc(w)}</li>" for w in warnings) + "</ul>")
    if errors_of(data) and data.result is not None:
        parts.append("<h3>Errors</h3><ul>" + "".join(f"<li>{esc(e)}</li>" for e in errors_of(data)) + "</ul>")
    return "".join(parts)


def _clock(records: Sequence[dict[str, Any]]) -> tuple[float, float]:
    """(start, duration) in Unix seconds; a record's `ts` is written when it ends, so it started `ms` earlier."""
    spans = [(num(r.get("ts")), num(r.get("ms")) or 0.0) for r in records]
    starts = [ts - ms / 1000 for ts, ms in spans if ts is not None]
    ends = [ts for ts, _ in spans if ts is not None]
    if not starts:
        return 0.0, 0.0
    return min(starts), max(ends) - min(starts)


def _note(record: dict[str, Any]) -> str:
    """A few words about a record for the timeline."""
    for key in ("error", "message", "status", "action", "key"):
        if record.get(key) is not None:
            return f"{key}: {record[key]}"[:160]
    if record.get("kind") == "critique":
        verdict = as_dict(record.get("verdict"))
        return f"ok: {verdict.get('ok')}, score: {verdict.get('score')}"
    return ""


def _fields(record: dict[str, Any]) -> str:
    """The whole record, folded: every field stays inspectable without a section of its own (long ones cut)."""
    text = json.dumps(record, ensure_ascii=False, indent=1, default=str)
    if len(text) > MAX_FIELDS:
        text = f"{text[:MAX_FIELDS]} … ({len(text) - MAX_FIELDS} more characters)"
    return f"<details><summary>fields</summary>{pre(text)}</details>"


_LINKED = ("llm_call", "decision", "tool_call", "critique")  # a tuple: a record's kind may be unhashable


def render_timeline(data: RunData, thumbs: Thumbs) -> str:
    if not data.records:
        return empty("the trace has no records")
    t0, total = _clock(data.records)
    rows = []
    for i, record in enumerate(data.records):
        ts, ms = num(record.get("ts")), num(record.get("ms")) or 0.0
        start = ts - ms / 1000 - t0 if ts is not None else None
        bar = ""
        if start is not None and ms > 0 and total > 0:
            left = min(100.0, max(0.0, 100 * start / total))
            width = min(100.0 - left, max(0.4, 100 * ms / 1000 / total))
            bar = f'<div class="bar"><span style="left:{left:.2f}%;width:{width:.2f}%"></span></div>'
        kind, name = record.get("kind"), esc(record.get("name"))
        link = f'<a href="#rec-{i}">{name}</a>' if kind in _LINKED else name
        css = "err" if record.get("error") or kind == "error" else ""
        rows.append(
            [
                str(i),
                "–" if start is None else f"{start:.3f}",
                f'<span class="kind {css}">{esc(kind)}</span>',
                link,
                esc(record.get("round")),
                fmt(ms, 1),
                bar,
                esc(_note(record)) + _fields(record),
            ]
        )
    head = f"<p>{len(data.records)} records over {total:.2f} s; bars are scaled to the whole run.</p>"
    return head + table(["#", "start s", "kind", "name", "round", "ms", "when", "note"], rows, "timeline")


def _content(content: Any) -> str:
    """A message's content: text, or a list of parts (text parts shown, images named, never loaded)."""
    if isinstance(content, str):
        return pre(content)
    parts = []
    for part in as_list(content):
        part = as_dict(part)
        if part.get("type") == "text":
            parts.append(pre(part.get("text", "")))
        else:
            parts.append(f'<p class="part">[{esc(part.get("type", "part"))} part]</p>')
    return "".join(parts) or pre(content)


def _tool_calls(calls: Any) -> str:
    items = []
    for call in map(as_dict, as_list(calls)):
        args = call.get("args", call.get("arguments"))
        items.append(f'<li><code class="tool">{esc(call.get("name"))}</code>{pre(args)}</li>')
    return f"<h4>tool calls</h4><ul>{''.join(items)}</ul>" if items else ""


def _llm_turn(i: int, record: dict[str, Any]) -> str:
    tokens = f"{fmt(record.get('input_tokens'))} in / {fmt(record.get('output_tokens'))} out tokens"
    head = (
        f"#{i} <b>{esc(record.get('name'))}</b>{round_label(record)} · {esc(record.get('model'))} · "
        f"attempt {fmt(record.get('attempt'))} · {tokens} · {fmt(record.get('ms'), 1)} ms"
    )
    error = f'<p class="error">error: {esc(record["error"])}</p>' if record.get("error") else ""
    messages = "".join(
        f'<div class="msg"><div class="role">{esc(m.get("role"))}</div>{_content(m.get("content"))}</div>'
        for m in map(as_dict, as_list(record.get("messages")))
    )
    n = len(as_list(record.get("messages")))
    return (
        f'<details class="item" id="rec-{i}" open><summary>{head}</summary>{error}'
        f"<details><summary>{n} messages</summary>{messages}</details>"
        f"<h4>response</h4>{pre(record.get('response', ''))}{_tool_calls(record.get('tool_calls'))}</details>"
    )


def render_planner(data: RunData, thumbs: Thumbs) -> str:
    items = []
    for i, record in data.of_kind("llm_call", "decision"):
        if record.get("kind") == "llm_call":
            items.append(_llm_turn(i, record))
        else:
            items.append(
                f'<div class="item decision" id="rec-{i}">#{i} decision{round_label(record)}: '
                f"<b>{esc(record.get('action'))}</b> — {esc(record.get('reason'))}</div>"
            )
    return "".join(items) or empty("no LLM calls or decisions in this trace (the fixed pipeline has no planner)")


def render_tools(data: RunData, thumbs: Thumbs) -> str:
    items = []
    for i, record in data.of_kind("tool_call"):
        error = f'<p class="error">error: {esc(record["error"])}</p>' if record.get("error") else ""
        items.append(
            f'<details class="item" id="rec-{i}" open><summary>#{i} <code class="tool">{esc(record.get("name"))}'
            f"</code>{round_label(record)} · {fmt(record.get('ms'), 1)} ms</summary>{error}"
            f"<h4>arguments</h4>{pre(record.get('arguments'))}<h4>result</h4>{pre(record.get('result'))}"
            f"{thumbs.row(record.get('images'))}</details>"
        )
    return "".join(items) or empty("no tool calls in this trace")


def _finding(finding: Any) -> str:
    """A deterministic check's finding: its fields as "key: value", or the value as it is."""
    if isinstance(finding, dict):
        return ", ".join(f"<b>{esc(k)}</b>: {esc(v)}" for k, v in finding.items())
    return esc(finding)


def _findings(findings: Any) -> str:
    items = as_list(findings) if not isinstance(findings, dict) else [findings]
    if not items:
        return ""
    rows = "".join(f"<li>{_finding(f)}</li>" for f in items)
    return f"<h4>findings</h4><ul>{rows}</ul>"


def render_critiques(data: RunData, thumbs: Thumbs) -> str:
    items = []
    for i, record in data.of_kind("critique"):
        verdict = as_dict(record.get("verdict"))
        ok = verdict.get("ok")
        badge = f'<span class="badge {"ok" if ok is True else "bad"}">{"ok" if ok is True else "not ok"}</span>'
        problems = "".join(f"<li>{esc(p)}</li>" for p in as_list(verdict.get("problems")))
        rows = [
            ["ok", f"{badge} {esc(ok)}"],
            ["score", f'<span class="score">{fmt(verdict.get("score"))}</span>'],
            ["source", esc(verdict.get("source"))],
            ["problems", f"<ul>{problems}</ul>" if problems else "none"],
            ["suggestion", esc(verdict.get("suggestion"))],
        ]
        items.append(
            f'<div class="item" id="rec-{i}"><h4>#{i} {esc(record.get("name"))}{round_label(record)}</h4>'
            f"{table(['', ''], rows, 'facts')}{_findings(record.get('findings'))}"
            f"{thumbs.row(record.get('images'))}</div>"
        )
    return "".join(items) or empty("no critiques in this trace")


def _frame_image(data: RunData, frame: dict[str, Any]) -> Image.Image | None:
    """The sampled frame k: work/frames/<k>.png, or for a frames source (AVSBench) the file run.json names."""
    k = frame.get("index", frame.get("frame_index"))
    if not isinstance(k, int) or isinstance(k, bool):
        return None
    path = inside(data.run_dir, f"work/frames/{k:05d}.png")
    source = as_dict(as_dict(data.run_info).get("source"))
    paths = as_list(source.get("frame_paths"))
    if path is None and source.get("kind") == "frames" and 0 <= k < len(paths):
        path = Path(str(paths[k]))  # the user's own input files, named by the runner, not by the trace
    if path is None:
        return None
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except Exception:
        return None


def _decode(rle: Any, frame: dict[str, Any]) -> np.ndarray:
    """An object's RLE as a mask, refused when its size is not the frame's: result.json is untrusted, and a
    forged size would otherwise make pycocotools allocate height x width bytes."""
    size = as_list(as_dict(rle).get("size"))
    if size != [frame.get("height"), frame.get("width")] or not all(isinstance(v, int) for v in size):
        raise ValueError(f"RLE size {size} is not the frame's")
    return decode_rle(rle)


def _frame_masks(data: RunData, frame: dict[str, Any]) -> tuple[list[np.ndarray], str]:
    """The frame's object masks from their RLE (one per object, so colours match the object list), else its
    union from the mask PNG; and where they came from."""
    objects = [as_dict(o) for o in as_list(frame.get("objects"))]
    masks: list[np.ndarray] = []
    for obj in objects:
        try:
            masks.append(_decode(obj["rle"], frame))
        except Exception:
            masks.append(np.zeros((1, 1), bool))  # keeps the colours in step with the list; drawn as nothing
    if masks and any(m.any() for m in masks):
        return masks, "result RLE"
    path = inside(data.run_dir, frame.get("mask_file"))
    if path is not None:
        try:
            return [read_mask_png(path)], "mask PNG"
        except Exception:
            pass
    return masks, "none"


def _tag(tag: Any) -> str:
    """A tag as "label score" ([label, score] pairs in result.json), or as it is."""
    pair = as_list(tag)
    return f"{esc(pair[0])} {fmt(pair[1])}" if len(pair) == 2 else esc(tag)


def _swatch(i: int) -> str:
    r, g, b = PALETTE[i % len(PALETTE)]
    return f'<span class="swatch" style="background:rgb({r},{g},{b})"></span>'


def _mask_row(data: RunData, thumbs: Thumbs, frame: dict[str, Any]) -> str:
    image = _frame_image(data, frame)
    masks, origin = _frame_masks(data, frame)
    if image is None and origin != "none":  # masks without their frame: shown on grey
        height, width = masks[0].shape
        image = Image.new("RGB", (max(1, width), max(1, height)), (40, 40, 40))
    figures = ""
    if image is not None:
        figures = (
            f'<figure class="thumb"><img src="{image_data_uri(image)}" alt="frame"><figcaption>frame</figcaption>'
            f'</figure><figure class="thumb"><img src="{image_data_uri(overlay_thumbnail(image, masks))}" '
            f'alt="overlay"><figcaption>overlay ({esc(origin)})</figcaption></figure>'
        )
    objects = [
        [
            _swatch(n),
            esc(o.get("phrase")),
            esc(o.get("box")),
            fmt(o.get("box_score"), 4),
            fmt(o.get("mask_score"), 4),
            fmt(o.get("area")),
        ]
        for n, o in enumerate(map(as_dict, as_list(frame.get("objects"))))
    ]
    tags = ", ".join(_tag(t) for t in as_list(frame.get("tags")))
    captions = "".join(f"<li>{esc(c)}</li>" for c in as_list(frame.get("captions")))
    time_s, pts_s = frame.get("timestamp_s"), frame.get("pts_s")
    shown = ""
    if isinstance(time_s, int | float) and isinstance(pts_s, int | float) and abs(time_s - pts_s) > 5e-4:
        shown = f" (the frame on screen then starts at {fmt(pts_s)} s)"  # uniform or fps sampling between frames
    facts = [
        ["time", f"{fmt(time_s)} s{shown}"],
        ["mask file", f"<code>{esc(frame.get('mask_file'))}</code>"],
        ["phrases", esc(", ".join(map(str, as_list(frame.get("phrases"))))) or "–"],
        ["union area", f"{fmt(frame.get('union_area'))} px"],
        ["captions", f"<ul>{captions}</ul>" if captions else "–"],
        ["tags", tags or "–"],
    ]
    detail = table(["", ""], facts, "facts")
    if objects:
        detail += table(["", "phrase", "box", "box score", "mask score", "area px"], objects)
    k = frame.get("index", frame.get("frame_index"))
    number = frame_number(k) if isinstance(k, int) and not isinstance(k, bool) else k
    return f'<div class="frame"><h4>frame {esc(number)}</h4><div class="row">{figures}<div>{detail}</div></div></div>'


def render_masks(data: RunData, thumbs: Thumbs) -> str:
    if data.result is None:
        frames = sorted((data.run_dir / "work" / "frames").glob("*.png"))
        shown = thumbs.row([str(p.relative_to(data.run_dir)) for p in frames])
        note = "no result.json: the run did not finish, so there are no final masks"
        return empty(note) + (f"<h4>sampled frames</h4>{shown}" if shown else "")
    frames = [as_dict(f) for f in as_list(data.result.get("frames"))]
    return "".join(_mask_row(data, thumbs, f) for f in frames) or empty("the result has no frames")


def _seconds_table(title: str, seconds: dict[str, Any]) -> str:
    rows = [[esc(k), fmt(v)] for k, v in seconds.items()]
    total = sum(n for n in map(num, seconds.values()) if n is not None)
    return f"<h3>{title}</h3>" + table(["stage", "seconds"], [*rows, ["<b>total</b>", fmt(total)]])


def _trace_seconds(data: RunData, kind: str) -> dict[str, Any]:
    return {str(r.get("name")): (num(r.get("ms")) or 0.0) / 1000 for _, r in data.of_kind(kind)}


def _llm_tokens(data: RunData) -> str:
    """LLM calls per name from the trace: the only place an agent run's planner and critic tokens are counted."""
    groups: dict[str, list[float]] = {}
    for _, record in data.of_kind("llm_call"):
        g = groups.setdefault(str(record.get("name")), [0, 0, 0, 0.0, 0])
        g[0] += 1
        g[1] += num(record.get("input_tokens")) or 0
        g[2] += num(record.get("output_tokens")) or 0
        g[3] += num(record.get("ms")) or 0.0
        g[4] += 1 if record.get("error") else 0
    if not groups:
        return "<h3>LLM tokens (trace)</h3>" + empty("no LLM calls in the trace")
    rows = [[esc(name), *(fmt(v, 1) for v in g)] for name, g in groups.items()]
    totals = [sum(g[n] for g in groups.values()) for n in range(5)]
    rows.append(["<b>total</b>", *(fmt(v, 1) for v in totals)])
    header = ["name", "calls", "input tokens", "output tokens", "ms", "failed"]
    return "<h3>LLM tokens (trace)</h3>" + table(header, rows)


def _by_kind(data: RunData) -> str:
    groups: dict[tuple[str, str], list[float]] = {}
    for record in data.records:
        g = groups.setdefault((str(record.get("kind")), str(record.get("name"))), [0, 0.0])
        g[0] += 1
        g[1] += num(record.get("ms")) or 0.0
    rows = [[esc(k), esc(n), fmt(g[0]), fmt(g[1], 1)] for (k, n), g in groups.items()]
    return "<h3>Trace records by kind</h3>" + table(["kind", "name", "records", "total ms"], rows)


def render_costs(data: RunData, thumbs: Thumbs) -> str:
    result = as_dict(data.result)
    parts = []
    if data.result is not None:
        parts.append(_seconds_table("Time per stage (result.json)", as_dict(result.get("timings_s"))))
        parts.append(_seconds_table("Model load (result.json)", as_dict(result.get("model_load_s"))))
        usage = [
            [esc(stage), fmt(u.get("input_tokens")), fmt(u.get("output_tokens")), fmt(u.get("calls"))]
            for stage, u in ((s, as_dict(u)) for s, u in as_dict(result.get("usage")).items())
        ]
        tokens = as_dict(result.get("tokens"))
        usage.append(["<b>total</b>", fmt(tokens.get("input")), fmt(tokens.get("output")), ""])
        parts.append("<h3>Tokens per stage (result.json)</h3>" + table(["stage", "input", "output", "calls"], usage))
    else:
        parts.append(_seconds_table("Time per stage (trace)", _trace_seconds(data, "node")))
        parts.append(_seconds_table("Model load (trace)", _trace_seconds(data, "model_load")))
    parts.append(_llm_tokens(data))
    parts.append(_by_kind(data))
    return "".join(parts)
