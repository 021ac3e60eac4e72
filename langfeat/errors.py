"""Errors langfeat reports to users as one line (the CLI prints ``error: <message>`` and exits 2)."""


class LangfeatError(Exception):
    """A problem with the user's input or store; the message names the problem and the fix."""


class UsageError(LangfeatError):
    """Bad arguments or input data."""


class StoreError(LangfeatError):
    """A store that cannot be read or written."""
