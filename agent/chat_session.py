"""ChatSession: a conversation about one clip; the Python API under `python -m agent.chat` and the web app.

    with ChatSession("clip.mp4", profile="tiny") as chat:
        for event in chat.send("what is making the sound?"):
            print(event.kind, event.text)      # progress, token, tool ..., then the answer
        chat.history()                         # [{"role": "user" | "assistant", "content": ...}, ...]
        chat.outputs()                         # {"masks": ..., "overlay": ..., "result": ..., "trace": ...}

The run folder holds run.json (graph "chat", thread, settings, source: what a restart needs), chat.sqlite (the
conversation, checkpointed per step under the thread id), trace.jsonl and the outputs (masks/, overlay.mp4,
result.json). One folder holds one conversation: a new ChatSession with the same `out` (or, without `out`, the
same `thread`, which names the default folder runs/<clip>-chat-<thread>) continues it with its saved settings.

Each `send` runs one turn of the chat graph (graphs/chat.py) in a worker thread and yields its events as they
happen; turns run one at a time. A turn that fails ends with an "error" event (one line; the trace has the
record) instead of the "answer", and the conversation goes on.
"""

from __future__ import annotations

import queue
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.sqlite import SqliteSaver

from agent.chat_events import ChatEvent, EventKind, answer_event, tool_events
from agent.profiles import agent_profile, resolve_llm
from agent.run_record import (
    RUN_RECORD,
    check_database,
    check_new_run_folder,
    checkpoint_connection,
    named_folder,
    read_run_record,
    saved_settings,
    write_run_record,
)
from agent.runner import build_critic, build_planner, build_translator, preflight, preload_models
from graphs.chat import build_chat
from graphs.chat_planner import chat_llm_planner, streaming
from graphs.context import AgentSettings, RunContext
from graphs.pipeline import VideoSource
from graphs.planners import ChatPlanner
from tools.cache import DiskCache
from tools.datamodel import FIRST_FRAME_NUMBER
from tools.errors import InputError, OpenAVSError
from tools.media import probe_clip
from tools.models.registry import ModelRegistry
from tools.tracing import TraceWriter
from tools.translate import Translator

CHAT_DB = "chat.sqlite"
MAX_LINE_CHARS = 4000
_THREAD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_END = object()
__all__ = ["ChatEvent", "ChatSession", "EventKind"]


class ChatSession:
    """A conversation about one clip (see the module docstring). `registry`, `translator`, `planner` (a chat
    planner such as graphs.chat_planner.chat_llm_planner(...), or a tool-calling chat model), `critic` and
    `settings` (AgentSettings) replace what the profile names, as agent.runner.run_graph's do; `cache` keeps
    captions and LLM answers across runs. Raises InputError (one line, exit code 2) for a bad clip, thread or
    folder, before anything is written."""

    def __init__(
        self,
        clip: str | Path,
        *,
        profile: str = "default",
        llm: str | None = None,
        llm_base_url: str | None = None,
        thread: str | None = None,
        out: str | Path | None = None,
        registry: ModelRegistry | None = None,
        translator: Translator | None = None,
        planner: Any = None,
        critic: Any = None,
        settings: AgentSettings | None = None,
        cache: DiskCache | None = None,
    ) -> None:
        info = probe_clip(clip)
        self.clip = Path(info.path).resolve()
        self._source = VideoSource(kind="video", path=str(self.clip))
        self.thread_id, self.run_dir, saved = _locate(self.clip, thread, out)
        self.resumed = saved is not None
        self.settings = _settings(profile, llm, llm_base_url, settings, saved, injected_planner=planner is not None)
        preflight(self.settings)
        self._registry = registry or ModelRegistry(self.settings.device)
        self._translator = translator or (
            build_translator(self.settings) if self.settings.oracle_phrases is None else None
        )
        self._planner = chat_planner(planner, self.settings, self._registry)
        if isinstance(self._planner, ChatPlanner):
            self._planner.on_token = self._token
        self._critic = critic or build_critic(self.settings, self._registry)
        self._cache = cache
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if saved is None:
            write_run_record(self.run_dir, "chat", self.settings, self._source, thread=self.thread_id)
        self._tracer = TraceWriter(self.run_dir / "trace.jsonl")
        self._tracer.emit(
            "run_start",
            "chat",
            resume=self.resumed,
            thread=self.thread_id,
            source=dict(self._source),
            profile=self.settings.profile,
            device=self._registry.device,
            meaningful=self.settings.meaningful,
            frames_from=FIRST_FRAME_NUMBER,
        )
        self._conn = checkpoint_connection(self.run_dir / CHAT_DB)
        self._graph = build_chat().compile(checkpointer=SqliteSaver(self._conn))
        self._config = {
            "configurable": {"thread_id": self.thread_id},
            "recursion_limit": self.settings.recursion_limit,
        }
        self._turn_lock = threading.Lock()
        self._emit: Callable[[Any], None] | None = None
        self._streamed = ""
        self._models_ready = False
        self._closed = False
        self._close_unfinished_turn("the program stopped during it")

    # ------------------------------------------------------------------------------------------------ public API
    @property
    def planner_name(self) -> str:
        """Who plans: "builtin" (the request handler) or the chat LLM's model name."""
        return "builtin" if self.settings.planner == "builtin" else getattr(self._planner, "model_name", "llm")

    def send(self, text: str) -> Iterator[ChatEvent]:
        """Run one turn on the user's line and yield its events as they happen; the last is "answer" (or
        "error" when the turn failed). The line is the user's request to the chat LLM, capped in length."""
        if self._closed:
            raise RuntimeError("this ChatSession is closed")
        line = text.strip()[:MAX_LINE_CHARS]
        if not line:
            yield ChatEvent("error", "an empty message: nothing to answer", {"type": "InputError"})
            return
        events: queue.Queue[Any] = queue.Queue()
        worker = threading.Thread(target=self._run_turn, args=(line, events.put), name="chat-turn", daemon=True)
        worker.start()
        while (event := events.get()) is not _END:
            yield event
        worker.join()

    def history(self) -> list[dict[str, str]]:
        """The conversation so far: the user's lines and the answers, in order."""
        rows = []
        for message in self._graph.get_state(self._config).values.get("messages", []):
            if isinstance(message, HumanMessage):
                rows.append({"role": "user", "content": message.text})
            elif isinstance(message, AIMessage) and not message.tool_calls and message.text.strip():
                rows.append({"role": "assistant", "content": message.text})
        return rows

    def outputs(self) -> dict[str, str]:
        """Paths of the run's outputs that exist: masks (folder), overlay, result, trace."""
        paths = {
            "masks": self.run_dir / "masks",
            "overlay": self.run_dir / "overlay.mp4",
            "result": self.run_dir / "result.json",
            "trace": self.run_dir / "trace.jsonl",
        }
        return {key: str(path) for key, path in paths.items() if path.exists()}

    def close(self) -> None:
        """Wait for a running turn, then release the conversation's database. Idempotent."""
        if self._closed:
            return
        with self._turn_lock:
            self._closed = True
            self._tracer.emit("run_end", "chat", status="ok", thread=self.thread_id)
            self._conn.close()

    def __enter__(self) -> ChatSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------ one turn
    def _run_turn(self, line: str, emit: Callable[[Any], None]) -> None:
        with self._turn_lock:
            self._emit, self._streamed = emit, ""
            try:
                self._turn(line, emit)
            except BaseException as err:  # a worker thread has no caller to raise to: report it as one line
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                message = first if isinstance(err, OpenAVSError) else f"internal error: {type(err).__name__}: {first}"
                self._tracer.emit("error", "chat", error=f"{type(err).__name__}: {first}")
                self._close_unfinished_turn(message)
                emit(ChatEvent("error", message, {"type": type(err).__name__}))
            finally:
                self._emit = None
                emit(_END)

    def _turn(self, line: str, emit: Callable[[Any], None]) -> None:
        context = self._context(emit)
        if not self._models_ready:
            preload_models(self.settings, self._registry, self._tracer, context.progress)
            self._models_ready = True
        inputs = {"source": self._source, "messages": [HumanMessage(line)]}
        updates = self._graph.stream(inputs, self._config, context=context, stream_mode="updates", durability="sync")
        for update in updates:
            for event in tool_events(update):
                if event.data.get("phase") == "start":
                    self._streamed = ""  # text streamed before a tool call was a preamble, not the answer
                emit(event)
        emit(answer_event(self._graph.get_state(self._config).values, self._streamed, self.outputs()))

    def _context(self, emit: Callable[[Any], None]) -> RunContext:
        """A fresh runtime context per turn: its clock is the turn's deadline."""

        def progress(stage: str, message: str) -> None:
            emit(ChatEvent("progress", message, {"stage": stage}))

        return RunContext(
            settings=self.settings,
            registry=self._registry,
            translator=self._translator,
            run_dir=self.run_dir,
            tracer=self._tracer,
            cache=self._cache,
            progress=progress,
            planner=self._planner,
            critic=self._critic,
        )

    def _token(self, text: str) -> None:
        self._streamed += text
        if self._emit is not None:
            self._emit(ChatEvent("token", text))

    def _close_unfinished_turn(self, reason: str) -> None:
        """End a turn that stopped midway (a crash, a killed process) so the next one starts clean: its open tool
        calls are answered and it gets an answer saying it did not finish."""
        snapshot = self._graph.get_state(self._config)
        if not snapshot.next:
            return
        messages = snapshot.values.get("messages", [])
        last = messages[-1] if messages else None
        patch: list[Any] = []
        if isinstance(last, AIMessage) and last.tool_calls:
            patch += [ToolMessage(f"not run: {reason}", tool_call_id=c["id"], status="error") for c in last.tool_calls]
        patch.append(AIMessage(f"This request did not finish: {reason}."))
        self._graph.update_state(self._config, {"messages": patch}, as_node="answer")


def _locate(clip: Path, thread: str | None, out: str | Path | None) -> tuple[str, Path, AgentSettings | None]:
    """The thread id, the run folder, and the saved settings of a conversation to continue (None: a new one)."""
    if thread is not None and not _THREAD_ID.match(thread):
        raise InputError(f"--thread {thread!r}: use letters, digits, '.', '_' and '-' (at most 64)")
    thread_id = thread or f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    run_dir = named_folder(out) if out is not None else Path("runs") / f"{clip.stem}-chat-{thread_id}"
    if not (run_dir / RUN_RECORD).is_file():
        check_new_run_folder(run_dir)
        return thread_id, run_dir, None
    saved = read_run_record(run_dir, str(run_dir))
    if (run_dir / CHAT_DB).is_file():
        check_database(run_dir / CHAT_DB, str(run_dir))
    if saved["graph"] != "chat":
        raise InputError(f"{run_dir} holds an agent.solve run, not a conversation: choose another --out")
    saved_thread = saved.get("thread")
    if not isinstance(saved_thread, str) or not _THREAD_ID.match(saved_thread):
        raise InputError(f"{run_dir}: {RUN_RECORD} names no conversation thread")
    if thread is not None and saved_thread != thread:
        raise InputError(f"{run_dir} holds conversation {saved_thread!r}, not {thread!r}")
    if Path(str(saved["source"].get("path"))) != clip:
        raise InputError(f"{run_dir} holds a conversation about {saved['source'].get('path')}, not {clip}")
    return saved_thread, run_dir, saved_settings(saved, AgentSettings, str(run_dir))


def _settings(
    profile: str,
    llm: str | None,
    llm_base_url: str | None,
    given: AgentSettings | None,
    saved: AgentSettings | None,
    injected_planner: bool,
) -> AgentSettings:
    """The given settings, else a continued conversation's saved ones, else the profile's; then the LLM options
    (an LLM the profile needs must be configured) and, with an injected planner, planner "llm"."""
    if given is not None:
        settings = given
    elif saved is not None:
        settings = saved
    else:
        settings = agent_profile(profile)
    needs_llm = given is None and (
        (settings.oracle_phrases is None and settings.translator == "llm")
        or (settings.planner == "llm" and settings.planner_model is None)
    )
    if needs_llm or llm or llm_base_url:
        settings = resolve_llm(settings, llm, llm_base_url)
    if injected_planner:
        settings = settings.model_copy(update={"planner": "llm"})
    return AgentSettings.model_validate(settings.model_dump())


def chat_planner(planner: Any, settings: AgentSettings, registry: ModelRegistry) -> Any:
    """An injected planner as is (a chat model gets wrapped), else the chat LLM the settings name, else None."""
    if isinstance(planner, BaseChatModel):
        return chat_llm_planner(planner, getattr(planner, "model_name", None) or type(planner).__name__)
    if planner is not None:
        return planner
    return build_planner(settings, registry, make=lambda model, name: chat_llm_planner(streaming(model), name))
