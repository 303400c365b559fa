"""Typed errors. Each carries the process exit code the CLIs use and reads as one line for the user."""

from __future__ import annotations


class OpenAVSError(Exception):
    """Base of every error this project raises on purpose; `str(err)` is a one-line user message."""

    exit_code: int = 1


class InputError(OpenAVSError):
    """The user's input is unusable: missing, not a video, corrupt, bad argument value. Exit code 2."""

    exit_code = 2


class ModelUnavailableError(OpenAVSError):
    """A model's weights are neither cached nor reachable; the message says how to provide them. Exit code 2."""

    exit_code = 2


class ModelOutputError(OpenAVSError):
    """A model answered with something that cannot be parsed even after the allowed retry. Exit code 1."""

    exit_code = 1
