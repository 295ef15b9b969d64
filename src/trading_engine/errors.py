"""Errors that are the user's mistake, not the program's.

Raise `UserError` (or a subclass) for input the user can fix: a parameter no pipeline can use, an
unknown symbol, an empty window, an exchange that cannot be reached. `kedro run` shows its message
alone, with exit status 1 and no traceback (`kedro run --verbose` adds the traceback;
trading_engine/cli.py). Any other exception keeps its traceback.
"""


class UserError(ValueError):
    """A mistake in what the user asked for; its message says what to change."""
