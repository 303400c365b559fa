"""A test rig for chat sessions: the agent rig's scripted fakes behind a ChatSession (a helper module)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.chat_session import ChatEvent, ChatSession
from tests.agent_rig import CAPTIONS, Rig
from tools.critic import Critic
from tools.translate import LexiconTranslator


class ChatRig(Rig):
    """Rig's clip and fakes (the piano is found only below the paper's 0.25 box threshold); sessions keep their
    conversation in `chat_dir`."""

    def __init__(self, tmp_path: Path, captions: list[str] = CAPTIONS) -> None:
        super().__init__(tmp_path, captions=captions)
        self.chat_dir = tmp_path / "chat"

    def session(self, **kwargs: Any) -> ChatSession:
        settings = self.settings.model_copy(update=kwargs.pop("settings", {}))
        options: dict[str, Any] = {
            "settings": settings,
            "registry": self.registry,
            "translator": LexiconTranslator(),
            "critic": Critic(vlm=None),
            "out": self.chat_dir,
            **kwargs,
        }
        return ChatSession(self.clip, **options)


def ask(chat: ChatSession, line: str) -> tuple[ChatEvent, list[ChatEvent]]:
    """Send a line; the last event (the answer, or an error) and all events."""
    events = list(chat.send(line))
    return events[-1], events


def tools_called(events: list[ChatEvent]) -> list[str]:
    return [e.data["name"] for e in events if e.kind == "tool" and e.data.get("phase") == "start"]
