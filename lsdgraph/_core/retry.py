"""One retry policy for every call that crosses the network during a load: MongoDB commands and
S3 reads. Exponential back-off, capped; the caller decides which errors are transient and what the
user is told when the policy gives up."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` more tries after the first, waiting ``base · 2**k`` seconds (at most ``cap``)
    before try ``k + 1``: with the defaults a load rides out about 8 s of outage plus each try's
    own time-out."""

    retries: int = 5
    base: float = 0.25
    cap: float = 4.0

    def delays(self) -> Iterator[float]:
        for k in range(self.retries):
            yield min(self.base * 2 ** k, self.cap)


DEFAULT = RetryPolicy()


def call(fn: Callable[[], T], *, transient: tuple[type[BaseException], ...],
         give_up: Callable[[BaseException], BaseException], policy: RetryPolicy = DEFAULT,
         before_retry: Callable[[BaseException], None] | None = None,
         sleep: Callable[[float], None] = time.sleep) -> T:
    """``fn()``, tried again after each ``transient`` error; when the tries run out, raises
    ``give_up(last_error)``. ``before_retry(err)`` runs before each new try (to reconnect, or to
    note that a write may be replayed)."""
    delays = policy.delays()
    while True:
        try:
            return fn()
        except transient as e:
            delay = next(delays, None)
            if delay is None:
                raise give_up(e) from None
            if before_retry is not None:
                before_retry(e)
            sleep(delay)
