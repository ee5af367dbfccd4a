"""qwen3-tracer: see every number a Qwen3 model computes, from token ids to the next token."""

__version__ = "0.1.0"


class TracerError(Exception):
    """A problem with the user's input: the CLI prints it as one line and exits with code 2."""
