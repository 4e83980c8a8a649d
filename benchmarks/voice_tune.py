"""Tuning set for the voice path: commands of its own, never the held-out corpus.

The voice benchmark (``voice_bench.py``) scores the held-out spoken commands of
``tests/data/conversation/spoken_commands.jsonl``; nothing may be tuned on them. The
recogniser's settings (window, beam, prompt) and the choice among its readings were
chosen here instead, on commands generated from the demo lab's own names and aliases
(``examples/lab.yaml``) and a few generic phrasings per intent written for this script,
spoken by espeak-ng voices the benchmark does not use.

In process, no server: espeak-ng → PyAV → ``WhisperSpeechToText`` → ``conversation.heard``
with the grammar and the semantic stage (no local model). Reported: right intent and
device (a clarifying question counts as not right), clarifications, polarity inversions,
and the recogniser's time per second of speech (wall clock, and CPU seconds, which load on
the machine changes less).

Run:  PYTHONPATH=src python benchmarks/voice_tune.py [--window 10] [--beam 5]
      [--alternatives 4] [--per-intent 2] [--show] [--out FILE]
Writes benchmarks/results/voice_tune.json (or FILE).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from kittylab.adapters.llm.minilm import MiniLmEncoder
from kittylab.adapters.speech.audio import PyAvDecoder
from kittylab.adapters.speech.whisper import WhisperSpeechToText, default_model_dir
from kittylab.conversation.heard import choose
from kittylab.conversation.lab import vocabulary_from_manifest
from kittylab.conversation.understanding.pipeline import Understander
from kittylab.conversation.understanding.polarity import OPPOSITE
from kittylab.conversation.understanding.semantic import SemanticStage
from kittylab.conversation.understanding.vocabulary import LabVocabulary
from kittylab.conversation.voice import lab_hints
from kittylab.manifest.loader import load_manifest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.integration.voice_audio import speak  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "voice_tune.json"

PATTERNS: dict[str, list[str]] = {
    "light_on": ["turn on the {n}", "switch the {n} on", "{n} on"],
    "light_off": ["turn off the {n}", "{n} off", "switch off the {n}"],
    "light_set_brightness": ["set the {n} to {pct} percent", "dim the {n} to {pct} percent"],
    "door_lock": ["lock the {n}", "lock up the {n}"],
    "door_unlock": ["unlock the {n}", "open the {n}"],
    "power_on": ["power on the {n}", "turn on the {n}", "switch on the {n}"],
    "power_off": ["power off the {n}", "shut down the {n}", "turn off the {n}"],
    "camera_snapshot": ["take a picture with the {n}", "snapshot from the {n}", "show me the {n}"],
    "sensor_read": ["read the {n}", "check the {n}", "what does the {n} say"],
    "print_pause": ["pause the {n}", "pause the print on the {n}"],
    "print_resume": ["resume the {n}", "continue the print on the {n}"],
    "print_cancel": ["cancel the {n}", "abort the print on the {n}"],
    "printer_status": ["status of the {n}", "how is the {n} doing", "what is the {n} doing"],
    "printer_heat": [
        "heat the {n} nozzle to {temp}",
        "set the {n} bed to {bed} degrees",
        "preheat the {n} for {material}",
    ],
    "printer_cooldown": ["cool down the {n}", "let the {n} cool off"],
    "print_start": [
        "print {file} dot gcode on the {n}",
        "start printing {file} dot gcode on the {n}",
    ],
}
"""Generic phrasings of each intent, after the grammar's own templates."""
FILES = ["gear", "spacer", "knob", "handle", "lid", "mount"]
MATERIALS = ["pla", "petg", "abs"]
VOICES = [("en-gb", 165), ("en-us+m1", 150), ("en-us+f2", 170), ("en-029", 155), ("en-us-nyc", 160)]
"""None of them is one of the benchmark's."""

_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen",
]  # fmt: skip
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def in_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    hundreds, rest = divmod(n, 100)
    return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " and " + in_words(rest))


def tuning_set(vocabulary: LabVocabulary, per_intent: int, seed: int = 16) -> list[dict[str, Any]]:
    """``per_intent`` phrasings of every intent of every device, each with one of the
    device's names, in the next voice."""
    rng = random.Random(seed)  # noqa: S311 - a repeatable sample, not a secret
    out: list[dict[str, Any]] = []
    for device in sorted(vocabulary.devices, key=lambda d: d.external_id):
        names = [n for n in (device.display_name, *device.aliases) if n.strip()]
        for intent in sorted(device.intents):
            patterns = PATTERNS.get(intent, [])
            for pattern in rng.sample(patterns, min(per_intent, len(patterns))):
                text = pattern.format(
                    n=rng.choice(names).lower(),
                    pct=in_words(rng.choice([10, 25, 40, 60, 75, 90])),
                    temp=in_words(rng.choice([200, 210, 230, 245])),
                    bed=in_words(rng.choice([55, 65, 70, 90])),
                    material=rng.choice(MATERIALS),
                    file=rng.choice(FILES),
                )
                voice, speed = VOICES[len(out) % len(VOICES)]
                out.append(
                    {"text": text, "intent": intent, "device": device.external_id,
                     "voice": voice, "speed": speed}
                )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--alternatives", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--per-intent", type=int, default=2)
    parser.add_argument("--show", action="store_true", help="print every miss")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results file")
    args = parser.parse_args()
    vocabulary = vocabulary_from_manifest(load_manifest(ROOT / "examples" / "lab.yaml"))
    understander = Understander(None, semantic=SemanticStage(MiniLmEncoder()))
    stt = WhisperSpeechToText(
        default_model_dir(),
        threads=args.threads,
        beam_size=args.beam,
        alternatives=args.alternatives,
        window_seconds=args.window,
        idle_release_seconds=0,
    )
    stt.warm_up()
    hints = lab_hints(vocabulary)
    decoder = PyAvDecoder()
    rows: list[dict[str, Any]] = []
    for entry in tuning_set(vocabulary, args.per_intent):
        audio = decoder.decode(
            speak(entry["text"], voice=entry["voice"], speed=entry["speed"]), "wav",
            max_seconds=30,
        )  # fmt: skip
        wall, cpu = time.perf_counter(), time.process_time()
        transcript = stt.transcribe(audio, hints=hints)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        heard = choose(
            transcript.text,
            transcript.alternatives,
            lambda t: understander.understand(t, vocabulary, use_model=False),
        )
        u = heard.understanding
        got = [u.intent, u.device.external_id if u.device else None]
        right = got == [entry["intent"], entry["device"]] and u.problem is None
        inverted = u.problem is None and OPPOSITE.get(entry["intent"]) == u.intent
        rows.append(
            {
                **entry,
                "heard": heard.text,
                "readings": list(heard.readings),
                "got": got,
                "problem": u.problem,
                "right": right,
                "clarified": bool(u.clarify),
                "inverted": inverted,
                "seconds": round(audio.seconds, 3),
                "stt_rtf": round(wall / audio.seconds, 3),
                "stt_cpu_per_second": round(cpu / audio.seconds, 3),
            }
        )
        if args.show and not right:
            print(f"  miss [{entry['voice']}] {entry['text']!r} → {heard.text!r} → {got}")
    right = sum(r["right"] for r in rows)
    summary = {
        "utterances": len(rows),
        "right_intent_and_device": right,
        "right_share": round(right / len(rows), 3),
        "clarifying_questions": sum(r["clarified"] for r in rows),
        "inversions": sum(r["inverted"] for r in rows),
        "chosen_not_best": sum(1 for r in rows if r["heard"] != r["readings"][0]),
        "stt_rtf_median": round(statistics.median(r["stt_rtf"] for r in rows), 3),
        "stt_cpu_per_second_median": round(
            statistics.median(r["stt_cpu_per_second"] for r in rows), 3
        ),
        "settings": {
            "window_seconds": args.window,
            "beam_size": args.beam,
            "alternatives": args.alternatives,
            "threads": args.threads,
        },
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "utterances": rows}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
