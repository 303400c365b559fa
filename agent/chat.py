"""`python -m agent.chat CLIP`: a conversation about what makes the sound in a video, masks kept up to date.

One request per line: typed at the `you> ` prompt, or read from stdin when it is not a terminal, so it can be
scripted: printf 'what is making the sound?\\nsegment it\\nquit\\n' | python -m agent.chat clip.mp4
Answers go to stdout after `agent> ` (an LLM's text as it streams); progress and tool calls go to stderr.
`quit`, `exit`, end of input or Ctrl-D end the conversation; `--thread ID` (and the same --out, if one was given)
continues it later. With no LLM, the built-in handler answers the requests `help` lists (graphs/chat_intents.py).

Exit codes: 0 the conversation ended; 2 bad arguments or clip (one line on stderr); 1 an internal failure, or,
when reading from a pipe, a request that failed (the conversation went on; scripts notice); 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, TextIO

from agent.cli_names import PROFILE_NAMES
from tools.cache import open_cache
from tools.cli import ArgumentParser
from tools.errors import OpenAVSError
from tools.media import probe_clip

if TYPE_CHECKING:
    from agent.chat_events import ChatEvent
    from agent.chat_session import ChatSession

QUIT_WORDS = {"quit", "exit", "bye", ":q"}
PROMPT = "you> "
AGENT = "agent> "


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m agent.chat", description=__doc__.splitlines()[0])
    parser.add_argument("clip", help="the video file (mp4, mov, webm, ...)")
    parser.add_argument("--profile", default="default", choices=PROFILE_NAMES, help="model set (default: default)")
    parser.add_argument("--llm", help="chat model for free-form conversation (OpenAI-compatible; OPENAI_API_KEY)")
    parser.add_argument("--llm-base-url", help="base URL of an OpenAI-compatible server (or OPENAI_BASE_URL)")
    parser.add_argument("--thread", help="conversation id: continue that conversation (default: a new one)")
    parser.add_argument("--out", help="run folder of the conversation (default: runs/<clip>-chat-<thread>)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the caption/LLM cache")
    return parser


class Printer:
    """Shows a turn's events: answers (and streamed tokens) on `out`, everything else on `err`."""

    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out, self.err = out, err
        self.streaming = False

    def show(self, event: ChatEvent) -> None:
        if event.kind == "token":
            if not self.streaming:
                self.out.write(AGENT)
                self.streaming = True
            self.out.write(event.text)
            self.out.flush()
            return
        if event.kind == "answer" and self.streaming and event.data.get("streamed"):
            self._end_stream()
            return
        self._end_stream()
        if event.kind == "answer":
            print(AGENT + event.text.replace("\n", "\n" + " " * len(AGENT)), file=self.out, flush=True)
        elif event.kind == "error":
            print(f"error: {event.text}", file=self.err, flush=True)
        elif event.kind == "tool" and event.data.get("phase") == "start":
            print(f"  -> {event.text}", file=self.err, flush=True)
        elif event.kind == "tool":
            print(f"  <- {event.text}", file=self.err, flush=True)
        else:
            print(f"  [{event.data.get('stage', event.kind)}] {event.text}", file=self.err, flush=True)

    def _end_stream(self) -> None:
        if self.streaming:
            self.out.write("\n")
            self.out.flush()
            self.streaming = False


def read_lines(stdin: TextIO, interactive: bool) -> Iterator[str]:
    """Non-blank lines: from the prompt (with line editing) in a terminal, else plain lines from stdin."""
    if interactive:
        import readline  # noqa: F401  (line editing and history for input())

        while True:
            try:
                line = input(PROMPT)
            except EOFError:
                print(file=sys.stderr)
                return
            if line.strip():
                yield line.strip()
    else:
        for line in stdin:
            if line.strip():
                yield line.strip()


def _banner(chat: ChatSession, args: argparse.Namespace, err: TextIO) -> None:
    resume = f"python -m agent.chat {args.clip} --thread {chat.thread_id}" + (f" --out {args.out}" if args.out else "")
    print(f"conversation {chat.thread_id} in {chat.run_dir} (continue it with: {resume})", file=err)
    if chat.planner_name == "builtin":
        print("planner: built-in; say 'help' for what it understands, or give --llm MODEL", file=err)
    else:
        print(f"planner: {chat.planner_name}", file=err)
    if not chat.settings.meaningful:
        print("note: some models have random weights; the masks are meaningless", file=err)
    history = chat.history()
    if history:
        print(f"resumed: {sum(m['role'] == 'user' for m in history)} earlier request(s); the last exchange:", file=err)
        for message in history[-2:]:
            who = PROMPT if message["role"] == "user" else AGENT
            print(f"  {who}{message['content'].splitlines()[0]}", file=err)


def converse(chat: ChatSession, lines: Iterator[str], printer: Printer) -> bool:
    """Send each line until a quit word or the end; returns whether every request succeeded."""
    ok = True
    for line in lines:
        if line.lower() in QUIT_WORDS:
            break
        for event in chat.send(line):
            printer.show(event)
            ok = ok and event.kind != "error"
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    interactive = sys.stdin.isatty()
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):  # a caption's odd character must not end the conversation
            stream.reconfigure(errors="replace")
    try:
        probe_clip(args.clip)
        cache = None if args.no_cache else open_cache()
        # Only now, with the clip known to be readable: the session loads torch, transformers and LangGraph (seconds),
        # which a mistyped path need not wait for.
        from agent.chat_session import ChatSession

        chat = ChatSession(
            args.clip,
            profile=args.profile,
            llm=args.llm,
            llm_base_url=args.llm_base_url,
            thread=args.thread,
            out=args.out,
            cache=cache,
        )
    except OpenAVSError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except Exception as err:  # one line for the user
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"internal error: {type(err).__name__}: {first}", file=sys.stderr)
        return 1
    _banner(chat, args, sys.stderr)
    try:
        ok = converse(chat, read_lines(sys.stdin, interactive), Printer(sys.stdout, sys.stderr))
    except KeyboardInterrupt:
        # No close(): it would wait for the running turn; the next session ends that turn cleanly.
        print(f"\ninterrupted; continue with --thread {chat.thread_id}", file=sys.stderr)
        return 130
    chat.close()
    return 0 if ok or interactive else 1


if __name__ == "__main__":
    sys.exit(main())
