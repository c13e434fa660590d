"""Progress of a long loop: a tqdm bar on a terminal, else a log line at every tenth with elapsed time and ETA.

A bar's carriage returns turn a log file into one unreadable line, so off a TTY (a Ray job's log, `| tee`, CI)
the same loop logs `desc 30/100 (30%), 12.4 s, ETA 28.9 s` ten times instead.
"""

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)
T = TypeVar("T")


def track(items: Iterable[T], *, desc: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """Yield `items`, showing how far the loop is; `enabled=False` yields them silently."""
    items = list(items) if total is None else items
    total = len(items) if total is None else total
    if not enabled or total == 0:
        yield from items
        return
    if sys.stderr.isatty():
        yield from tqdm(items, desc=desc, total=total, leave=False)
        return
    start = time.perf_counter()
    marks = {max(1, round(total * k / 10)) for k in range(1, 11)}
    for done, item in enumerate(items, start=1):
        yield item
        if done in marks:
            elapsed = time.perf_counter() - start
            eta = elapsed / done * (total - done)
            logger.info("%s %d/%d (%.0f%%), %.1f s, ETA %.1f s", desc, done, total, 100 * done / total, elapsed, eta)
