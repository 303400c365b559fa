"""The names the command lines offer as choices, importable before any model library.

agent.profiles loads torch and transformers (seconds); the parsers take their choices from here so that `--help`
and a mistyped argument answer at once.
"""

PROFILE_NAMES = ("paper", "default", "sam3", "tiny")
SEGMENTATION_MODES = ("image", "propagate", "video")
GRAPH_NAMES = ("agent", "pipeline")
