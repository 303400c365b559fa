"""The web app's one page: inline CSS and JS, no external assets, and a Content-Security-Policy that says so.

The script reads every server string into the page with textContent, never as HTML: answers, captions and file
names are untrusted text. It streams a turn's server-sent events from a fetch() body (EventSource cannot POST).
"""

from __future__ import annotations

import secrets

CSS = """
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#222;background:#f6f7f9}
header{background:#24364b;color:#fff;padding:.7em 1.2em}
header h1{font-size:1.25em;margin:0}header p{margin:.2em 0 0;opacity:.8;font-size:.9em}
main{display:flex;flex-wrap:wrap;gap:1em;padding:1em 1.2em}
.card{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:.8em 1em}
#left{flex:1 1 420px;max-width:720px}#right{flex:1 1 360px;display:flex;flex-direction:column}
h2{font-size:1em;margin:.1em 0 .6em;color:#24364b}
.row{display:flex;flex-wrap:wrap;gap:.5em;align-items:center;margin:.4em 0}
button{background:#2f6db5;color:#fff;border:0;border-radius:4px;padding:.45em .9em;font:inherit;cursor:pointer}
button:disabled{background:#9aa8b8;cursor:default}
select,input[type=text]{font:inherit;padding:.35em;border:1px solid #c5ccd4;border-radius:4px}
#error{display:none;background:#fbe3e3;color:#900;border-radius:4px;padding:.5em .8em;margin:.5em 0;font-weight:600}
#player{width:100%;max-height:52vh;background:#111;border-radius:4px;margin-top:.5em}
.note{color:#667;font-size:.85em}
#links a{margin-right:1em}#links a.off{display:none}
#log{height:62vh;overflow:auto;border:1px solid #e3e6ea;border-radius:4px;padding:.5em;background:#fbfbfc}
.msg{margin:.4em 0;padding:.45em .7em;border-radius:6px;white-space:pre-wrap;word-break:break-word}
.user{background:#e4eefb;margin-left:15%}.answer{background:#e8f5e9;margin-right:10%}
details.steps{color:#667;font-size:.85em;margin:.2em .7em}details.steps div{padding-left:1.2em}
.failed{background:#fbe3e3;color:#900}
#ask{display:flex;gap:.5em;margin-top:.6em}#question{flex:1}
#status{color:#667;font-size:.85em;min-height:1.3em;margin-top:.3em}
"""

SCRIPT = """
const $ = id => document.getElementById(id);
let session = null, busy = false, limits = {};

function showError(text) {
  const e = $('error');
  e.textContent = text || '';
  e.style.display = text ? 'block' : 'none';
}
function addMsg(cls, text) {
  const d = document.createElement('div');
  d.className = 'msg ' + cls;
  d.textContent = text;
  $('log').appendChild(d);
  $('log').scrollTop = $('log').scrollHeight;
  return d;
}
async function detail(r) {
  try { const j = await r.json(); return j.detail || JSON.stringify(j); }
  catch (e) { return r.status + ' ' + r.statusText; }
}
function setLinks(out) {
  for (const [key, id] of [['masks', 'masks-link'], ['result', 'result-link'], ['trace', 'trace-link']]) {
    const a = $(id);
    if (out[key]) { a.href = out[key]; a.className = ''; }
    else { a.removeAttribute('href'); a.className = 'off'; }
  }
  if (out.overlay) {
    $('player').src = out.overlay;
    $('player-label').textContent = 'Overlay: the masks of the sounding objects, with the sound of the clip';
  }
}
function setBusy(b) {
  busy = b;
  $('upload').disabled = b; $('pick').disabled = b; $('send').disabled = b || !session;
}
async function opened(r) {
  if (!r.ok) { showError(await detail(r)); return; }
  const s = await r.json();
  session = s; showError('');
  $('log').textContent = '';
  $('clip-name').textContent = s.clip + ' (' + s.duration_s.toFixed(1) + ' s)';
  $('player').src = s.links.clip;
  $('player-label').textContent = 'The clip; ask a question to see the masks';
  setLinks({});
}
async function upload(ev) {
  ev.preventDefault();
  const f = $('file').files[0];
  if (!f) { showError('choose a video file first'); return; }
  if (limits.max_upload_bytes && f.size > limits.max_upload_bytes) {
    showError('the file is larger than the ' + limits.max_upload_mb + ' MB limit'); return;
  }
  const form = new FormData();
  form.append('clip', f);
  setBusy(true); $('status').textContent = 'uploading ' + f.name + ' ...';
  try { await opened(await fetch('/api/sessions', {method: 'POST', body: form})); }
  catch (e) { showError('upload failed: ' + e); }
  finally { $('status').textContent = ''; setBusy(false); }
}
async function pick(ev) {
  ev.preventDefault();
  const name = $('example').value;
  if (!name) return;
  setBusy(true);
  try {
    const body = JSON.stringify({example: name});
    await opened(await fetch('/api/sessions', {method: 'POST', headers: {'Content-Type': 'application/json'}, body}));
  } catch (e) { showError('could not open the example: ' + e); }
  finally { setBusy(false); }
}
function step(state, text) {
  // A turn's progress and tool lines go into one foldable list, open while the turn runs.
  if (!state.steps) {
    state.steps = document.createElement('details');
    state.steps.className = 'steps'; state.steps.open = true;
    state.steps.appendChild(document.createElement('summary'));
    $('log').appendChild(state.steps);
  }
  const line = document.createElement('div');
  line.textContent = text;
  state.steps.appendChild(line);
  state.count += 1;
  state.steps.firstChild.textContent = state.count + (state.count === 1 ? ' step' : ' steps');
  $('status').textContent = text;
  $('log').scrollTop = $('log').scrollHeight;
}
function onEvent(ev, state) {
  const bubble = () => state.bubble || (state.bubble = addMsg('answer', ''));
  if (ev.kind === 'progress') { step(state, ev.text); }
  else if (ev.kind === 'tool') { step(state, 'tool: ' + ev.text); }
  else if (ev.kind === 'token') { bubble().textContent += ev.text; }
  else if (ev.kind === 'answer') {
    bubble().textContent = ev.text; bubble().classList.add('final');
    if (state.steps) state.steps.open = false;
    $('log').scrollTop = $('log').scrollHeight;
  }
  else if (ev.kind === 'error') { addMsg('failed', ev.text); showError(ev.text); }
  else if (ev.kind === 'outputs') { setLinks(ev.data || {}); }
}
async function ask(ev) {
  ev.preventDefault();
  const text = $('question').value.trim();
  if (!text || !session || busy) return;
  showError(''); addMsg('user', text); $('question').value = ''; setBusy(true);
  const state = {bubble: null, steps: null, count: 0};
  try {
    const r = await fetch('/api/sessions/' + session.id + '/messages', {method: 'POST',
      headers: {'Content-Type': 'application/json', 'Accept': 'text/event-stream'}, body: JSON.stringify({text})});
    if (!r.ok) { showError(await detail(r)); return; }
    const reader = r.body.getReader(), decoder = new TextDecoder();
    let buf = '';
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buf.indexOf('\\n\\n')) >= 0) {
        const chunk = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        for (const line of chunk.split('\\n')) if (line.startsWith('data: ')) onEvent(JSON.parse(line.slice(6)), state);
      }
    }
  } catch (e) { showError('the answer was cut off: ' + e); }
  finally { $('status').textContent = ''; setBusy(false); }
}
async function init() {
  $('upload-form').addEventListener('submit', upload);
  $('pick-form').addEventListener('submit', pick);
  $('ask').addEventListener('submit', ask);
  limits = await (await fetch('/api/config')).json();
  $('limits').textContent = 'Clips up to ' + limits.max_upload_mb + ' MB and ' + limits.max_clip_seconds
    + ' s. Models: profile ' + limits.profile + '.';
  const names = (await (await fetch('/api/examples')).json()).examples;
  for (const n of names) {
    const o = document.createElement('option');
    o.value = n; o.textContent = n;
    $('example').appendChild(o);
  }
  if (!names.length) $('pick-form').style.display = 'none';
  setBusy(false);
}
init();
"""

BODY = """
<header><h1>OpenAVS: what is making the sound?</h1>
<p>Upload a clip or pick an example, then ask. The answer comes with masks of the sounding objects.</p></header>
<main>
<div id="left" class="card">
  <h2>Clip</h2>
  <form id="upload-form" class="row"><input type="file" id="file" accept="video/*">
    <button id="upload" type="submit" disabled>Upload</button></form>
  <form id="pick-form" class="row"><label for="example">or an example:</label><select id="example"></select>
    <button id="pick" type="submit" disabled>Open</button></form>
  <div id="limits" class="note"></div>
  <div id="error" role="alert"></div>
  <div class="row"><strong id="clip-name">no clip yet</strong></div>
  <video id="player" controls playsinline></video>
  <div id="player-label" class="note"></div>
  <div id="links" class="row"><a id="masks-link" class="off" download>Download masks (zip)</a>
    <a id="result-link" class="off" download>result.json</a>
    <a id="trace-link" class="off" target="_blank" rel="noopener">Trace</a></div>
</div>
<div id="right" class="card">
  <h2>Chat</h2>
  <div id="log" aria-live="polite"></div>
  <form id="ask"><input type="text" id="question" maxlength="2000" autocomplete="off"
    placeholder="What is making the sound?"><button id="send" type="submit" disabled>Send</button></form>
  <div id="status"></div>
</div>
</main>
"""


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def content_security_policy(nonce: str) -> str:
    """Only this page's own inline style and nonce'd script run; media, fetches and links stay on this server."""
    return (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; "
        "connect-src 'self'; media-src 'self'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


def render_page(nonce: str) -> str:
    """The page; `nonce` must be the one in the response's Content-Security-Policy header."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>OpenAVS chat</title><style>{CSS}</style></head><body>{BODY}"
        f'<script nonce="{nonce}">{SCRIPT}</script></body></html>\n'
    )
