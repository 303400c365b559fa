"""Test-wide settings: offline hub, deterministic CPU threads."""

from __future__ import annotations

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("OPENAI_BASE_URL", None)
os.environ.pop("LANGSMITH_TRACING", None)
os.environ["OPENAVS_CACHE_DIR"] = tempfile.mkdtemp(prefix="openavs-test-cache-")
