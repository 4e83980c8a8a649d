"""The semantic stage (issue 16) on the whole corpora and its cost.

    PYTHONPATH=src python benchmarks/semantic_bench.py

Scores the existing corpus and the held-out paraphrase and polarity corpora with the
grammar alone and with the semantic stage (exact = intent, device and labelled arguments;
clarifying questions counted apart; inversions; hazardous requests read as something safe
that would be acted on), then times, in process, a grammar-tier understanding against one
the semantic stage reads. The grammar-tier turn over HTTP and /healthz beside it come
from the last ``query_bench.py`` run (``results/query_bench.json``). Writes
``results/semantic_bench.json``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from kittylab.adapters.llm.minilm import MiniLmEncoder
from kittylab.cli.parse import evaluate
from kittylab.config import QuerySettings
from kittylab.conversation.lab import vocabulary_from_manifest
from kittylab.conversation.understanding.pipeline import Understander
from kittylab.conversation.understanding.semantic import SemanticStage
from kittylab.conversation.understanding.types import Stage
from kittylab.manifest.loader import load_manifest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CORPORA = {
    "query_corpus": ROOT / "tests" / "data" / "query_corpus.jsonl",
    "paraphrases": ROOT / "tests" / "data" / "conversation" / "paraphrases.jsonl",
    "polarity": ROOT / "tests" / "data" / "conversation" / "polarity.jsonl",
}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def main() -> None:
    vocabulary = vocabulary_from_manifest(load_manifest(ROOT / "examples" / "lab.yaml"))
    encoder = MiniLmEncoder()
    stage = SemanticStage(encoder)
    started = time.perf_counter()
    stage.warm_up()
    warm_up_s = round(time.perf_counter() - started, 2)
    understander = Understander(None, semantic=stage)
    settings = QuerySettings()
    scores: dict[str, Any] = {}
    semantic_texts: list[str] = []
    grammar_texts: list[str] = []
    for name, path in CORPORA.items():
        entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        scores[name] = {}
        for label, use_semantic in (("grammar", False), ("grammar+semantic", True)):
            report = evaluate(
                understander, vocabulary, settings, entries, use_semantic=use_semantic
            )
            scores[name][label] = {
                "utterances": report.total,
                "exact": report.exact,
                "exact_pct": round(100 * report.exact / report.total, 1),
                "clarifying_questions": report.clarified,
                "inversions": report.inversions,
                "hazardous_reported_safe": report.hazardous_reported_safe,
                "device_actions_for_ask": report.asks_acted_on,
                "stages": dict(report.stages),
            }
        for entry in entries:
            u = understander.understand(entry["text"], vocabulary)
            bucket = semantic_texts if u.stage is Stage.SEMANTIC else grammar_texts
            if u.stage in (Stage.SEMANTIC, Stage.GRAMMAR):
                bucket.append(entry["text"])

    def timed(texts: list[str], use_semantic: bool) -> list[float]:
        out = []
        for _ in range(3):
            for text in texts:
                t = time.perf_counter()
                understander.understand(text, vocabulary, use_semantic=use_semantic)
                out.append((time.perf_counter() - t) * 1000)
        return out

    grammar_ms = timed(grammar_texts, True)
    semantic_ms = timed(semantic_texts, True)
    without_ms = timed(semantic_texts, False)
    added = statistics.median(semantic_ms) - statistics.median(without_ms)
    query = json.loads((RESULTS / "query_bench.json").read_text())
    http = query["http"]
    turn_p50 = http["post_query_grammar_device_request"]["p50_ms"]
    result = {
        "scores": scores,
        "timing_in_process_ms": {
            "encoder_and_exemplars_warm_up_s": warm_up_s,
            "grammar_tier_understanding": {
                "n": len(grammar_ms),
                "p50": _pct(grammar_ms, 0.5),
                "p95": _pct(grammar_ms, 0.95),
            },
            "semantic_tier_understanding": {
                "n": len(semantic_ms),
                "p50": _pct(semantic_ms, 0.5),
                "p95": _pct(semantic_ms, 0.95),
            },
            "same_utterances_without_semantic": {
                "p50": _pct(without_ms, 0.5),
                "p95": _pct(without_ms, 0.95),
            },
            "semantic_stage_added_p50": round(added, 3),
        },
        "against_a_grammar_tier_turn": {
            "source": "results/query_bench.json (POST /api/query, 16 clients, same machine)",
            "grammar_tier_turn_p50_ms": turn_p50,
            "healthz_same_load_p50_ms": http["healthz_same_load"]["p50_ms"],
            "semantic_added_share_of_turn_pct": round(100 * added / turn_p50, 1),
            "target_pct": 25,
        },
        "machine": {
            "python": platform.python_version(),
            "cores": os.cpu_count(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        },
    }
    out = RESULTS / "semantic_bench.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
