"""Write the semantic stage's exemplars from the existing query corpus.

    python scripts/build_exemplars.py

Reads ``tests/data/query_corpus.jsonl`` (never the held-out corpora of
``tests/data/conversation/``), leaves out its ``held_out`` and ``negated`` entries, masks
device and zone names with kind words as the semantic stage does (``slots.read_slots``
with the demo lab) and writes
``src/kittylab/conversation/understanding/corpus_exemplars.json``: ``[[text, intent], …]``.
"""

from __future__ import annotations

import json
from pathlib import Path

from kittylab.conversation.lab import vocabulary_from_manifest
from kittylab.conversation.understanding.grammar import GrammarStage
from kittylab.conversation.understanding.normalize import normalize
from kittylab.conversation.understanding.slots import read_slots
from kittylab.manifest.loader import load_manifest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "query_corpus.jsonl"
OUT = ROOT / "src" / "kittylab" / "conversation" / "understanding" / "corpus_exemplars.json"


def main() -> None:
    vocabulary = vocabulary_from_manifest(load_manifest(ROOT / "examples" / "lab.yaml"))
    corrector = GrammarStage(vocabulary).corrector
    rows: dict[tuple[str, str], None] = {}
    for line in CORPUS.read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        if entry.get("held_out") or entry.get("negated"):
            continue
        masked = read_slots(corrector.correct(normalize(entry["text"]))[0], vocabulary).masked
        rows.setdefault((masked, entry["intent"]), None)
    lines = [json.dumps(list(r), ensure_ascii=False) for r in rows]
    OUT.write_text("[\n" + ",\n".join(lines) + "\n]\n")
    print(f"{len(rows)} exemplars → {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
