"""What a question is about: pipelines, stages, components, metrics, aggregations, units, fault kinds.

Resolution works on the fleet the store knows (`Catalog`), so "the orders Glue job", "glue-orders-transform",
"the payments DAG" and "the warehouse of invoices" all land on a (pipeline, stage) pair. Matching is by
synonyms and word boundaries first, then fuzzy (difflib) for typos in pipeline and component names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.model import METRICS, STAGES, FaultKind, PipelineSpec, Stage

# -- vocabulary -----------------------------------------------------------------------------------
# Phrases are matched on lower-cased text where "-" and "_" became spaces; longer phrases win.
STAGE_WORDS: dict[str, Stage] = {
    "dms task": Stage.SOURCE, "dms": Stage.SOURCE, "cdc task": Stage.SOURCE, "cdc": Stage.SOURCE,
    "replication task": Stage.SOURCE, "replication": Stage.SOURCE, "source": Stage.SOURCE,
    "ingestion": Stage.SOURCE, "ingest": Stage.SOURCE, "change data capture": Stage.SOURCE,
    "replicator": Stage.SOURCE, "extract": Stage.SOURCE,
    "airflow dag": Stage.ORCHESTRATOR, "airflow": Stage.ORCHESTRATOR, "mwaa": Stage.ORCHESTRATOR,
    "dag": Stage.ORCHESTRATOR, "dags": Stage.ORCHESTRATOR, "orchestrator": Stage.ORCHESTRATOR,
    "orchestration": Stage.ORCHESTRATOR, "scheduler": Stage.ORCHESTRATOR, "workflow": Stage.ORCHESTRATOR,
    "glue job": Stage.TRANSFORM, "glue": Stage.TRANSFORM, "transform": Stage.TRANSFORM,
    "transformation": Stage.TRANSFORM, "transformer": Stage.TRANSFORM, "etl": Stage.TRANSFORM,
    "spark": Stage.TRANSFORM, "lambda": Stage.TRANSFORM, "transforms": Stage.TRANSFORM,
    "redshift": Stage.WAREHOUSE, "warehouse": Stage.WAREHOUSE, "data warehouse": Stage.WAREHOUSE,
    "dwh": Stage.WAREHOUSE, "snowflake": Stage.WAREHOUSE, "redshift cluster": Stage.WAREHOUSE,
    "wh": Stage.WAREHOUSE, "load stage": Stage.WAREHOUSE,
}
# Words that name a stage only when nothing stronger does ("the orders job").
WEAK_STAGE_WORDS: dict[str, Stage] = {"job": Stage.TRANSFORM, "jobs": Stage.TRANSFORM, "cluster": Stage.WAREHOUSE,
                                      "database": Stage.WAREHOUSE, "db": Stage.WAREHOUSE}

METRIC_WORDS: dict[str, str] = {
    "cpu": "cpu_pct", "cpu usage": "cpu_pct", "cpu utilization": "cpu_pct", "cpu utilisation": "cpu_pct",
    "cpu load": "cpu_pct", "processor": "cpu_pct", "utilization": "cpu_pct", "utilisation": "cpu_pct",
    "cpu pct": "cpu_pct", "compute usage": "cpu_pct",
    "memory": "memory_pct", "mem": "memory_pct", "ram": "memory_pct", "heap": "memory_pct",
    "memory usage": "memory_pct", "memory pct": "memory_pct", "memory utilization": "memory_pct",
    "memory utilisation": "memory_pct", "ram usage": "memory_pct", "memory consumption": "memory_pct",
    "heap usage": "memory_pct", "mem usage": "memory_pct",
    "latency": "latency_s", "latencies": "latency_s", "run time": "latency_s", "runtime": "latency_s",
    "duration": "latency_s", "response time": "latency_s", "processing time": "latency_s", "slow": "latency_s",
    "slowness": "latency_s", "delay": "latency_s", "latency s": "latency_s",
    "throughput": "throughput_rows_s", "rows per second": "throughput_rows_s", "rows s": "throughput_rows_s",
    "rows per sec": "throughput_rows_s", "rows a second": "throughput_rows_s", "row rate": "throughput_rows_s",
    "records per second": "throughput_rows_s", "volume": "throughput_rows_s", "rows per minute": "throughput_rows_s",
    "processing rate": "throughput_rows_s", "ingest rate": "throughput_rows_s", "rows processed": "throughput_rows_s",
    "throughput rows s": "throughput_rows_s", "rows": "throughput_rows_s", "rps": "throughput_rows_s",
    "error count": "error_count", "error rate": "error_count", "errors per minute": "error_count",
    "errors a minute": "error_count", "errors per min": "error_count",
    "workers": "workers", "worker count": "workers", "worker": "workers", "executors": "workers",
    "nodes": "workers", "dpus": "workers", "dpu": "workers", "instances": "workers", "capacity": "workers",
    "slots": "workers",
    "lag": "cdc_lag_s", "cdc lag": "cdc_lag_s", "replication lag": "cdc_lag_s", "replica lag": "cdc_lag_s",
    "replication delay": "cdc_lag_s", "cdc delay": "cdc_lag_s", "lagging": "cdc_lag_s", "cdc lag s": "cdc_lag_s",
    "queue wait": "queue_wait_s", "queue": "queue_wait_s", "queueing": "queue_wait_s", "queuing": "queue_wait_s",
    "wait time": "queue_wait_s", "waiting": "queue_wait_s", "wlm": "queue_wait_s", "queued": "queue_wait_s",
    "queue time": "queue_wait_s", "queue wait s": "queue_wait_s", "wlm queue": "queue_wait_s",
    "freshness": "freshness_s", "staleness": "freshness_s", "stale": "freshness_s", "fresh": "freshness_s",
    "data age": "freshness_s", "how old": "freshness_s", "age of the data": "freshness_s",
    "freshness s": "freshness_s", "up to date": "freshness_s", "how far behind": "freshness_s",
}
# Metrics only some stages emit: asking for them names the stage.
METRIC_STAGE: dict[str, tuple[Stage, ...]] = {
    "cdc_lag_s": (Stage.SOURCE,),
    "queue_wait_s": (Stage.WAREHOUSE, Stage.ORCHESTRATOR),
    "freshness_s": (Stage.WAREHOUSE,),
}
METRIC_LABELS: dict[str, str] = {
    "cpu_pct": "CPU", "memory_pct": "memory", "latency_s": "latency", "throughput_rows_s": "throughput",
    "error_count": "errors per minute", "workers": "workers", "cdc_lag_s": "CDC lag", "queue_wait_s": "queue wait",
    "freshness_s": "freshness", "anomaly_score": "anomaly score",
}

AGGREGATIONS = ("avg", "max", "min", "p50", "p90", "p95", "p99", "last", "sum")
AGG_WORDS: dict[str, str] = {
    "average": "avg", "avg": "avg", "mean": "avg", "typical": "avg", "typically": "avg", "normally": "avg",
    "usually": "avg", "on average": "avg", "averaged": "avg",
    "max": "max", "maximum": "max", "peak": "max", "peaked": "max", "highest": "max", "top": "max",
    "spike": "max", "spiked": "max", "worst": "max", "most": "max", "how high": "max", "max out": "max",
    "maxed": "max", "ceiling": "max", "biggest": "max", "largest": "max",
    "minimum": "min", "lowest": "min", "least": "min", "smallest": "min", "bottom": "min", "how low": "min",
    "dip": "min", "trough": "min", "fewest": "min",
    "median": "p50",
    "current": "last", "currently": "last", "now": "last", "right now": "last", "latest": "last",
    "at the moment": "last", "presently": "last", "at present": "last", "most recent": "last",
    "last value": "last", "last reading": "last", "as of now": "last", "as we speak": "last",
    "total": "sum", "sum": "sum", "in total": "sum", "altogether": "sum", "cumulative": "sum",
}
_NUMBERISH = frozenset({"a", "an", "one", "two", "three", "four", "five", "ten", "fifteen", "twenty",
                        "thirty", "few", "couple", "several", "sixty", "ninety", "last", "per", "past"})
_PERCENTILE = re.compile(r"\bp\s?(50|90|95|99)\b|"
                         r"\b(50|90|95|99)(?:st|nd|rd|th)?[\s-]*(?:percentile|pct|%\s*ile|%ile)\b")

UNIT_WORDS: dict[str, str] = {
    "in minutes": "min", "in mins": "min", "in min": "min", "in hours": "h", "in hrs": "h", "in seconds": "s",
    "in secs": "s", "in ms": "ms", "in milliseconds": "ms", "per minute": "per_min", "a minute": "per_min",
    "rows per minute": "per_min", "rows min": "per_min", "per hour": "per_h", "rows per hour": "per_h",
    "as minutes": "min", "how many minutes": "min",
}

FAULT_WORDS: dict[str, FaultKind] = {
    "schema drift": FaultKind.SCHEMA_DRIFT, "schema change": FaultKind.SCHEMA_DRIFT, "drift": FaultKind.SCHEMA_DRIFT,
    "renamed column": FaultKind.SCHEMA_DRIFT, "column renamed": FaultKind.SCHEMA_DRIFT,
    "missing column": FaultKind.SCHEMA_DRIFT, "unresolved column": FaultKind.SCHEMA_DRIFT,
    "schema": FaultKind.SCHEMA_DRIFT, "column": FaultKind.SCHEMA_DRIFT,
    "resource contention": FaultKind.RESOURCE_CONTENTION, "contention": FaultKind.RESOURCE_CONTENTION,
    "surge": FaultKind.RESOURCE_CONTENTION, "data surge": FaultKind.RESOURCE_CONTENTION,
    "out of memory": FaultKind.RESOURCE_CONTENTION, "oom": FaultKind.RESOURCE_CONTENTION,
    "outofmemory": FaultKind.RESOURCE_CONTENTION, "memory pressure": FaultKind.RESOURCE_CONTENTION,
    "network": FaultKind.NETWORK_FAILURE, "network failure": FaultKind.NETWORK_FAILURE,
    "connection": FaultKind.NETWORK_FAILURE, "connectivity": FaultKind.NETWORK_FAILURE,
    "flapping": FaultKind.NETWORK_FAILURE, "socket": FaultKind.NETWORK_FAILURE, "dns": FaultKind.NETWORK_FAILURE,
    "timeout": FaultKind.TIMEOUT, "time out": FaultKind.TIMEOUT, "timed out": FaultKind.TIMEOUT,
    "hung": FaultKind.TIMEOUT, "hang": FaultKind.TIMEOUT, "stuck": FaultKind.TIMEOUT,
    "no progress": FaultKind.TIMEOUT, "hanging": FaultKind.TIMEOUT,
    "warehouse overload": FaultKind.WAREHOUSE_OVERLOAD, "overload": FaultKind.WAREHOUSE_OVERLOAD,
    "overloaded": FaultKind.WAREHOUSE_OVERLOAD, "statement timeout": FaultKind.WAREHOUSE_OVERLOAD,
    "wlm": FaultKind.WAREHOUSE_OVERLOAD, "query queue": FaultKind.WAREHOUSE_OVERLOAD,
    "cdc stopped": FaultKind.CDC_STOPPED, "task stopped": FaultKind.CDC_STOPPED,
    "replication stopped": FaultKind.CDC_STOPPED, "stopped": FaultKind.CDC_STOPPED, "wal": FaultKind.CDC_STOPPED,
    "cdc lag": FaultKind.CDC_STOPPED, "replication lag": FaultKind.CDC_STOPPED,
}
FAULT_LABELS: dict[str, str] = {
    "schema_drift": "schema drift", "resource_contention": "resource contention / data surge",
    "network_failure": "network failure", "timeout": "hung task / timeout",
    "warehouse_overload": "warehouse overload", "cdc_stopped": "CDC task stopped", "unknown": "unknown cause",
    "credentials_expired": "expired credentials", "warehouse_saturation": "warehouse saturation",
}

_FLEET = re.compile(r"\b(?:all|every|each|any|entire|whole)\s+(?:the\s+|of\s+the\s+|our\s+)?(?:pipelines?|fleet|"
                    r"components?|stages?|dags?|jobs?|tasks?|warehouses?|clusters?|workers?)\b|\b(?:the\s+)?fleet\b|\beverything\b|\beverywhere\b|"
                    r"\bacross\s+the\s+board\b|\ball\s+of\s+them\b|\bwhich\s+pipelines?\b")
_INCIDENT_ID = re.compile(r"(?:\bincident|\binc|\bticket)\s*(?:#|no\.?|number|id)?\s*(\d{1,9})\b|#\s?(\d{1,9})\b")
_STOP = frozenset({
    "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at", "be",
    "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do",
    "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he",
    "her", "here", "hers", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most",
    "my", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "out", "over", "own",
    "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "them", "then", "there", "these",
    "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what",
    "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "last",
    "past", "hour", "hours", "minute", "minutes", "day", "days", "week", "today", "yesterday", "pipeline",
    "pipelines", "stage", "stages", "component", "errors", "error", "show", "tell", "give", "many", "much", "please",
    "thanks", "times", "happened", "happen", "going", "wrong", "broken", "fail", "failed", "failing",
    "failure", "failures", "issue", "issues", "problem", "problems", "incident", "incidents", "anomaly", "anomalies",
    "root", "cause", "explain", "status", "health", "healthy", "value", "values", "number", "count", "metric",
    "metrics", "level", "levels", "window", "average", "max", "min", "mean", "peak", "total", "rate", "propose",
    "fix", "scale", "restart", "remap", "reload", "retry", "apply", "run", "runs", "log", "logs", "search", "find",
    "runbook", "runbooks", "time", "since", "ago", "right", "current", "currently", "latest", "recent", "look",
    "looks", "looking", "anything", "something", "unusual", "weird", "happening",
})


_CONTRACTIONS = {"what's": "what is", "how's": "how is", "it's": "it is", "that's": "that is", "where's": "where is",
                 "who's": "who is", "there's": "there is", "here's": "here is", "let's": "let us",
                 "what're": "what are", "isn't": "is not", "aren't": "are not", "wasn't": "was not",
                 "didn't": "did not", "doesn't": "does not", "don't": "do not", "can't": "cannot", "won't": "will not",
                 "i'd": "i would", "i'm": "i am", "we're": "we are", "whats": "what is", "hows": "how is"}


def normalise(text: str) -> str:
    """Lower-case, straight quotes, contractions expanded, separators and possessives removed (a minus sign in front
    of a number kept), single spaces."""
    low = text.lower().replace("’", "'").replace("‘", "'")
    low = re.sub(r"\b(?:" + "|".join(re.escape(k) for k in _CONTRACTIONS) + r")(?![\w'])",
                 lambda m: _CONTRACTIONS[m[0]], low)
    low = re.sub(r"'s\b|s'(?=\s|$)", lambda m: "" if m[0] == "'s" else "s", low)
    low = re.sub(r"[_/]|(?<![\s(])-|-(?!\d)", " ", low)  # a minus sign stays: "-5 workers" is not 5 workers
    low = re.sub(r"[^a-z0-9%#.:\s-]", " ", low)
    return re.sub(r"\s+", " ", low).strip()


def _phrase_hits(text: str, vocab: dict[str, object]) -> list[tuple[int, int, str]]:
    """(start, end, phrase) of every non-overlapping vocabulary phrase in `text`, longest first."""
    taken: list[tuple[int, int]] = []
    hits = []
    for phrase in sorted(vocab, key=len, reverse=True):
        for m in re.finditer(rf"(?<![a-z0-9]){re.escape(phrase)}(?![a-z0-9])", text):
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue
            taken.append((m.start(), m.end()))
            hits.append((m.start(), m.end(), phrase))
    return sorted(hits)


# -- the fleet --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved pipeline and (optionally) stage, with the component name of that stage."""

    pipeline: str
    stage: Stage | None = None
    component: str | None = None


@dataclass(frozen=True, slots=True)
class Catalog:
    """The pipelines and component names the store knows."""

    pipelines: tuple[str, ...]
    components: dict[str, tuple[str, Stage]]

    @classmethod
    def from_specs(cls, specs: Iterable[PipelineSpec]) -> Catalog:
        specs = list(specs)
        comps = {p.component(s).lower(): (p.id, s) for p in specs for s in STAGES}
        return cls(tuple(p.id for p in specs), comps)

    def component_of(self, pipeline: str, stage: Stage) -> str:
        for name, (pid, st) in self.components.items():
            if pid == pipeline and st is stage:
                return name
        return f"{pipeline}-{stage.value}"

    def resolve(self, name: str) -> Target | None:
        """A pipeline id or component name (exact, case-insensitive, then fuzzy) as a target."""
        key = name.strip().lower()
        ids = {p.lower(): p for p in self.pipelines}
        if key in ids:
            return Target(ids[key])
        if key in self.components:
            pid, stage = self.components[key]
            return Target(pid, stage, key)
        found = find_mentions(name, self)
        if len(found.pipelines) == 1:
            stage = found.stage
            return Target(found.pipelines[0], stage, self.component_of(found.pipelines[0], stage) if stage else None)
        return None


def _variants(word: str) -> list[str]:
    out = [word]
    if word.endswith("ies"):
        out.append(word[:-3] + "y")
    if word.endswith("s"):
        out.append(word[:-1])
    else:
        out.extend([word + "s", word + "es"])
    if word.endswith("y"):
        out.append(word[:-1] + "ies")
    return out


def _find_pipelines(raw: str, catalog: Catalog) -> tuple[list[str], Target | None]:
    """Pipelines named in the question (in order) and a component named outright, if any."""
    found: list[str] = []
    component: Target | None = None
    comp_names = list(catalog.components)
    ids_lower = {p.lower(): p for p in catalog.pipelines}
    tokens = [re.sub(r"'s?$", "", t) for t in re.findall(r"[a-z0-9][a-z0-9_\-']*", raw.lower().replace("’", "'"))]
    for i, tok in enumerate(tokens):
        if tok in ids_lower:
            found.append(ids_lower[tok])
            continue
        if "-" in tok or "_" in tok:
            match = tok if tok in catalog.components else next(iter(difflib.get_close_matches(
                tok, comp_names, n=1, cutoff=0.86)), None)
            if match is not None:
                pid, stage = catalog.components[match]
                component = component or Target(pid, stage, match)
                found.append(pid)
                continue
            if "_" in tok:  # snake_case is a column or metric name (customer_id, cpu_pct), not a pipeline
                continue
        if tok == "order" and 0 < i < len(tokens) - 1 and tokens[i - 1] == "in" and tokens[i + 1] == "to":
            continue
        for part in tok.split("-"):
            hit = next((ids_lower[v] for v in _variants(part) if v in ids_lower), None)
            if hit is None and len(part) >= 5 and part.isalpha() and part not in _STOP and part not in METRIC_WORDS \
                    and part not in STAGE_WORDS and part not in AGG_WORDS:
                close = difflib.get_close_matches(part, list(ids_lower), n=1, cutoff=0.8)
                hit = ids_lower[close[0]] if close else None
            if hit is not None:
                found.append(hit)
    return list(dict.fromkeys(found)), component


@dataclass(frozen=True, slots=True)
class Mentions:
    """Everything a question names that the tools take as arguments."""

    pipelines: tuple[str, ...] = ()
    stage: Stage | None = None
    component: str | None = None
    metrics: tuple[str, ...] = ()
    aggregation: str | None = None
    unit: str | None = None
    fault_kind: FaultKind | None = None
    incident_id: int | None = None
    whole_fleet: bool = False
    ranking_aggregation: str | None = None  # the aggregation when ranking the fleet (rank words ignored)

    @property
    def pipeline(self) -> str | None:
        return self.pipelines[0] if self.pipelines else None


def find_stage(text: str) -> Stage | None:
    """The stage a normalised text names (strong words first, then weak ones like "job")."""
    hits = _phrase_hits(text, STAGE_WORDS)  # type: ignore[arg-type]
    if hits:
        return STAGE_WORDS[hits[0][2]]
    weak = _phrase_hits(text, WEAK_STAGE_WORDS)  # type: ignore[arg-type]
    return WEAK_STAGE_WORDS[weak[0][2]] if weak else None


def find_metrics(text: str) -> tuple[str, ...]:
    hits = _phrase_hits(text, METRIC_WORDS)  # type: ignore[arg-type]
    return tuple(dict.fromkeys(METRIC_WORDS[p] for _, _, p in hits))


RANK_WORDS = frozenset({"highest", "lowest", "most", "least", "top", "biggest", "largest", "fewest", "smallest",
                        "worst", "bottom"})


def find_aggregation(text: str, *, ranking: bool = False) -> str | None:
    """The aggregation a question asks for. When ranking pipelines, "highest"/"lowest" order the ranking and
    do not aggregate: "which pipeline has the highest CPU right now" ranks the latest values."""
    if m := _PERCENTILE.search(text):
        return f"p{m[1] or m[2]}"
    phrases = [p for _, _, p in _phrase_hits(text, AGG_WORDS)]  # type: ignore[arg-type]
    if ranking:
        phrases = [p for p in phrases if p not in RANK_WORDS]
    hits = [AGG_WORDS[p] for p in phrases]
    words = text.split()
    for i, word in enumerate(words):  # "min" is the minimum unless it is a unit ("30 min", "in min")
        before = words[i - 1] if i else ""
        if word == "min" and not (before.replace(".", "").isdigit() or before in _NUMBERISH or before == "in"):
            hits.append("min")
    for agg in ("max", "min", "avg", "p50", "sum", "last"):
        if agg in hits:
            return agg
    return None


def find_unit(text: str) -> str | None:
    hits = _phrase_hits(text, UNIT_WORDS)  # type: ignore[arg-type]
    return UNIT_WORDS[hits[0][2]] if hits else None


def find_fault_kind(text: str) -> FaultKind | None:
    for kind in FaultKind:
        if kind.value.replace("_", " ") in text:
            return kind
    hits = _phrase_hits(text, FAULT_WORDS)  # type: ignore[arg-type]
    return FAULT_WORDS[hits[0][2]] if hits else None


_NAMED = re.compile(r"\b(?:named|called|id)\s+[\"'`]?([a-z0-9][a-z0-9_.\-]*[a-z0-9])")
_NOUN = r"(?:pipeline|job|dag|task|function|lambda|cluster|workflow)s?"
_ID = r"([a-z0-9]+(?:[_\-][a-z0-9]+)+)"  # an identifier: kebab- or snake-case
_ID_BY_NOUN = re.compile(rf"\b{_ID}\s+(?:glue\s+|dms\s+|airflow\s+)?{_NOUN}\b|\b{_NOUN}\s+{_ID}\b")
_ID_PREFIX = re.compile(r"\b((?:dag|glue|dms|job|pipeline|lambda|etl|cdc)[_\-][a-z0-9][a-z0-9_\-]*)")


def unknown_name(question: str, catalog: Catalog) -> str | None:
    """A pipeline or component the question names that the fleet does not have ("dag_nosuch", "the job called
    x", "pipeline orders-v9"), or None. Only names written as names count: an identifier next to a component word,
    one with a component prefix, or one introduced by "named" / "called"; plain words never do."""
    raw = question.lower().replace("’", "'")
    found = [m[1] for m in _NAMED.finditer(raw)]
    found += [m[1] or m[2] for m in _ID_BY_NOUN.finditer(raw)]
    found += [m[1] for m in _ID_PREFIX.finditer(raw)]
    for name in found:
        if name in METRICS or re.fullmatch(r"[\d_\-:.]+", name):
            continue
        if catalog.resolve(name) is None:
            return name
    return None


def find_mentions(question: str, catalog: Catalog) -> Mentions:
    """Resolve everything a question names against the fleet in `catalog`."""
    text = normalise(question)
    pipelines, component = _find_pipelines(question, catalog)
    stage = component.stage if component else find_stage(text)
    metrics = find_metrics(text)
    if stage is None and len(metrics) == 1 and metrics[0] in METRIC_STAGE:
        stage = METRIC_STAGE[metrics[0]][0]
    if "behind" in text and "cdc_lag_s" not in metrics and stage is Stage.SOURCE:
        metrics = ("cdc_lag_s", *(m for m in metrics if m != "freshness_s"))
    ids = _INCIDENT_ID.search(question.lower())
    return Mentions(
        pipelines=tuple(pipelines), stage=stage,
        component=(component.component if component else
                   catalog.component_of(pipelines[0], stage) if pipelines and stage else None),
        metrics=metrics, aggregation=find_aggregation(text), unit=find_unit(text),
        ranking_aggregation=find_aggregation(text, ranking=True),
        fault_kind=find_fault_kind(text), incident_id=int(ids[1] or ids[2]) if ids else None,
        whole_fleet=bool(_FLEET.search(text)),
    )


def metric_stages(metric: str, stage: Stage | None) -> Sequence[Stage]:
    """The stages to read `metric` on: the named one, else the stages that emit it (all for common metrics)."""
    if stage is not None:
        return (stage,)
    return METRIC_STAGE.get(metric, STAGES)
