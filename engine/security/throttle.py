"""A sign-in throttle: after a few failed attempts, further attempts wait. Pure; the caller passes the time."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class SignInThrottle:
    """Failed sign-ins within `window_s` seconds; from the `max_failures`-th on, attempts wait `lockout_s`.

    Times are seconds on any monotonic clock the caller chooses (``time.monotonic()`` in the console, plain
    numbers in tests). Mutable on purpose: one instance per browser session, kept in its session state.
    """

    max_failures: int = 5
    window_s: float = 300.0
    lockout_s: float = 60.0
    failures: list[float] = field(default_factory=list)

    def retry_after(self, now: float) -> float:
        """Seconds until the next attempt is allowed; 0 when it is allowed now."""
        recent = self._recent(now)
        if len(recent) < self.max_failures:
            return 0.0
        return max(0.0, recent[-1] + self.lockout_s - now)

    def failed(self, now: float) -> None:
        """Record a failed attempt."""
        self.failures = [*self._recent(now), now]

    def succeeded(self) -> None:
        """Forget the failures: the person at the keyboard knows the password."""
        self.failures = []

    def _recent(self, now: float) -> list[float]:
        return [t for t in self.failures if now - t < self.window_s]
