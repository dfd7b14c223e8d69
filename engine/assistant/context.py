"""What every tool call shares: the store, who is asking, and (cached per answer) the fleet and the data span."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from engine.assistant.entities import Catalog, Target
from engine.assistant.window import Window, window_from_phrase
from engine.security.roles import Principal
from engine.store import repo
from engine.store.db import Store


def utcnow() -> datetime:
    return datetime.now(UTC)


class ToolFailure(Exception):  # noqa: N818 - an outcome, raised only inside a tool and turned into a result
    """Raised inside a tool to end it with an `error` (or, with `no_data=True`, a `no_data`) result."""

    def __init__(self, message: str, *, no_data: bool = False) -> None:
        super().__init__(message)
        self.no_data = no_data


@dataclass
class ToolContext:
    """One answer's view of the store. Not shared between threads; make one per question."""

    store: Store
    actor: str = "assistant"
    question: str = ""
    clock: Callable[[], datetime] = utcnow
    principal: Principal | None = None  # who asks, where known (the console's signed-in user): checked on writes
    proposal_ttl: timedelta | None = None  # how long a proposal waits (default: the execution policy file's)
    _catalog: Catalog | None = field(default=None, repr=False)
    _span: tuple[datetime, datetime] | None = field(default=None, repr=False)
    _span_read: bool = field(default=False, repr=False)

    def catalog(self) -> Catalog:
        if self._catalog is None:
            with self.store.read() as conn:
                self._catalog = Catalog.from_specs(repo.list_pipelines(conn))
        return self._catalog

    def span(self) -> tuple[datetime, datetime] | None:
        """(oldest, newest) minute of telemetry in the store; None when it is empty."""
        if not self._span_read:
            with self.store.read() as conn:
                self._span = repo.health_span(conn)
            self._span_read = True
        return self._span

    def window(self, phrase: str) -> Window:
        """The window a phrase names, counted back from the newest telemetry."""
        span = self.span()
        if span is None:
            raise ToolFailure("The store holds no telemetry yet, so there is nothing to look at.", no_data=True)
        try:
            return window_from_phrase(phrase, span[1], span[0])
        except ValueError as e:
            raise ToolFailure(str(e)) from e

    def target(self, name: str) -> Target:
        """A pipeline id or component name as a target; ToolFailure naming the known pipelines otherwise."""
        found = self.catalog().resolve(name)
        if found is None:
            known = list(self.catalog().pipelines)
            shown = ", ".join(known[:20]) + (f" … ({len(known)} in all)" if len(known) > 20 else "")
            raise ToolFailure(f"unknown pipeline or component {name!r}; known pipelines: {shown or 'none'}")
        return found
