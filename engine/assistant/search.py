"""Search log lines and runbooks by meaning: TF-IDF (words and character n-grams) with a small synonym map.

Runbooks ship with the package (engine/assistant/runbooks/*.md), one per fault kind, split into sections.
Log lines come from the store's events (warnings and errors), de-duplicated by message.
No network and no model download: scikit-learn's TfidfVectorizer is the whole "embedding".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from engine.assistant.args import SearchArgs
from engine.assistant.context import ToolContext
from engine.assistant.format import hhmm, iso
from engine.assistant.results import ToolResult, ToolStatus
from engine.model import Stage
from engine.store import assistant_repo

MIN_SCORE = 0.08
# Words people use for what the logs and runbooks say in other words.
EXPANSIONS: dict[str, str] = {
    "oom": "out of memory outofmemoryerror memory limit",
    "memory": "out of memory outofmemoryerror memory limit",
    "lag": "cdc lag replication task stopped wal",
    "cdc": "replication task stopped wal dms",
    "replication": "replication task stopped wal dms",
    "hung": "no progress running past expected duration timeout",
    "stuck": "no progress running past expected duration timeout",
    "hang": "no progress running past expected duration timeout",
    "timeout": "timed out timeout no progress statement timeout",
    "drift": "schema column unresolved_column renamed",
    "schema": "column unresolved_column renamed type",
    "column": "column unresolved_column schema",
    "network": "connection timed out socket connect reset by peer",
    "connection": "connection timed out socket connect reset by peer",
    "connectivity": "connection timed out socket connect",
    "flapping": "connection timed out retries",
    "overload": "wlm queue wait statement timeout warehouse",
    "queue": "wlm queue wait",
    "surge": "resource contention cpu memory out of memory scale workers",
    "contention": "cpu memory out of memory scale workers",
    "slow": "latency queue wait no progress",
    "redshift": "warehouse wlm copy query",
    "glue": "transform job executor",
    "dag": "airflow task orchestrator",
    "dms": "replication task cdc source",
    "fix": "fix propose",
    "restart": "restart task",
    "scale": "scale workers",
}


@dataclass(frozen=True, slots=True)
class RunbookSection:
    fault: str
    title: str
    section: str
    text: str
    path: str


def _parse_runbook(name: str, body: str) -> list[RunbookSection]:
    title = re.search(r"^# (.+)$", body, re.M)
    fault = re.search(r"^fault:\s*([a-z_]+)", body, re.M)
    out = []
    for m in re.finditer(r"^## (.+?)\n(.*?)(?=^## |\Z)", body, re.M | re.S):
        out.append(RunbookSection(fault[1] if fault else "unknown", title[1].strip() if title else name,
                                  m[1].strip(), " ".join(m[2].split()), f"runbooks/{name}"))
    return out


@lru_cache(maxsize=1)
def runbooks() -> tuple[RunbookSection, ...]:
    """Every section of every shipped runbook."""
    folder = resources.files("engine.assistant") / "runbooks"
    sections: list[RunbookSection] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".md"):
            sections.extend(_parse_runbook(entry.name, entry.read_text(encoding="utf-8")))
    return tuple(sections)


def runbook_for(fault: str) -> RunbookSection | None:
    """The "Fix" section of the runbook for a fault kind (the triage runbook for unknown causes)."""
    for s in runbooks():
        if s.fault == fault and s.section == "Fix":
            return s
    return None if fault == "unknown" else runbook_for("unknown")


def expand(query: str) -> str:
    words = re.findall(r"[a-z0-9_]+", query.lower())
    extra = [EXPANSIONS[w] for w in words if w in EXPANSIONS]
    return " ".join([query, *extra])


def rank(query: str, documents: list[str]) -> np.ndarray:
    """Cosine similarity of `query` to each document under TF-IDF of words and character 3–5-grams."""
    if not documents:
        return np.zeros(0)
    vectoriser = FeatureUnion([
        ("words", TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), token_pattern=r"(?u)\b[\w.]+\b",
                                  stop_words="english")),
        ("chars", TfidfVectorizer(sublinear_tf=True, analyzer="char_wb", ngram_range=(3, 5))),
    ])
    matrix = vectoriser.fit_transform([*documents, expand(query)])
    docs, q = matrix[:-1], matrix[-1]
    # Each half of the union is L2-normalised, so the plain dot product lies in [0, 2].
    return np.asarray((docs @ q.T).toarray()).ravel() / 2.0


def search_knowledge(ctx: ToolContext, args: SearchArgs) -> ToolResult:
    items: list[dict[str, Any]] = []
    docs: list[str] = []
    window_text = None
    if args.source in ("all", "runbooks"):
        for s in runbooks():
            items.append({"source": "runbook", "title": s.title, "section": s.section, "text": s.text,
                          "path": s.path, "fault": s.fault})
            docs.append(f"{s.title} {s.section} {s.text}")
    if args.source in ("all", "logs") and ctx.span() is not None:
        target = ctx.target(args.pipeline) if args.pipeline else None
        window = ctx.window(args.window)
        window_text = window.describe()
        with ctx.store.read() as conn:
            logs = assistant_repo.log_messages(conn, window.start, window.end,
                                               pipeline_ids=[target.pipeline] if target else None)
        catalog = ctx.catalog()
        for r in logs.itertuples(index=False):
            items.append({"source": "log", "pipeline": r.pipeline_id, "stage": r.stage,
                          "component": catalog.component_of(r.pipeline_id, Stage(r.stage)), "level": r.level,
                          "message": r.message, "count": int(r.count), "first_seen": iso(r.first_ts),
                          "last_seen": iso(r.last_ts)})
            docs.append(f"{r.message} {r.stage} {catalog.component_of(r.pipeline_id, Stage(r.stage))}")
    scores = rank(args.query, docs)
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] >= MIN_SCORE][: args.limit]
    hits = [{**items[i], "score": round(float(scores[i]), 3)} for i in order]
    data = {"query": args.query, "source": args.source, "hits": hits}
    if not hits:
        where = "logs or runbooks" if args.source == "all" else args.source
        return ToolResult(ToolStatus.NO_DATA, f"Nothing in the {where} matches {args.query!r}"
                          + (f" in {window_text}" if window_text else "") + ".", data, window_text)
    lines = []
    for h in hits:
        if h["source"] == "runbook":
            lines.append(f"runbook {h['title']} › {h['section']}: {h['text'][:160]}")
        else:
            lines.append(f"log {h['component']} ×{h['count']} (last {hhmm(h['last_seen'])}): "
                         f"\"{h['message'][:160]}\"")
    return ToolResult(ToolStatus.SUCCESS, f"{len(hits)} match(es) for {args.query!r}: " + " | ".join(lines), data,
                      window_text)
