"""Progress bars that draw only on a terminal.

`tqdm` here is used like `tqdm.auto.tqdm` (same arguments). On a terminal it is tqdm's text bar.
Where the output is not a terminal (CI, `docker compose logs`, a file, a notebook) no bar is drawn,
because a bar there writes hundreds of lines of carriage returns. Instead a kept bar (`leave=True`,
e.g. the epochs of a fold) logs one INFO line each time its results are set (`set_postfix`), such
as `fold 0: epoch 3/10, best=2, loss=0.9871, val_sharpe=1.20`. A transient bar (`leave=False`, e.g.
the batches of an epoch) logs nothing. `disable=True` still silences a bar completely.

It is the plain-text tqdm everywhere, never the notebook widget, so a notebook without ipywidgets
gets no TqdmWarning.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any

from tqdm.std import tqdm as _text_tqdm

logger = logging.getLogger(__name__)


def is_terminal(stream: Any = None) -> bool:
    """Whether `stream` (default: stderr, where bars are drawn) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class tqdm(_text_tqdm):  # noqa: N801 (named like the class it stands in for)
    """tqdm's text bar on a terminal; one log line per result elsewhere (see the module's doc)."""

    def __init__(self, iterable: Any = None, *args: Any, disable: bool | None = False, **kwargs: Any) -> None:
        self._log_results = not disable and not is_terminal(kwargs.get("file"))
        self._label = kwargs.get("desc") or ""
        self._unit = kwargs.get("unit", "it")
        self._logged_count = 0
        if self._log_results and not kwargs.get("leave", True):
            self._log_results = False  # transient: nothing worth a line
            disable = True
        elif self._log_results:
            disable = True
        super().__init__(iterable, *args, disable=disable, **kwargs)

    def __iter__(self) -> Iterator[Any]:
        if not self._log_results:
            yield from super().__iter__()
            return
        for count, item in enumerate(self.iterable, start=1):
            self._logged_count = count
            yield item

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh, **kwargs)
        if self._log_results:
            total = f"/{self.total}" if self.total is not None else ""
            logger.info("%s: %s %d%s, %s", self._label, self._unit, self._logged_count, total, self.postfix)
