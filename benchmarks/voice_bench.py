"""Voice benchmark: the held-out spoken commands (tests/data/conversation/
spoken_commands.jsonl) spoken by espeak-ng with several voices and speeds, sent as WAV to
``POST /api/voice/turn`` of a live ``kittylab serve`` (Whisper base, int8, on the CPU),
with ``/healthz`` of the same server measured in the same run as the yardstick.

Reported: the share of utterances whose turn has the right intent and device (target
≥ 90 %; a clarifying question counts as not right and is counted apart), how many of
those also have the labelled arguments, beside the share the same words get typed into
``/api/query`` (so a mishearing is told apart from a misunderstanding); the speech-to-text
real-time factor (transcription time / utterance length, target ≤ 0.5); and the whole
turn, as the client waits for it, over the utterance length (target ≤ 0.8). The corpus is
held out: it is never used to tune anything (``voice_tune.py`` has commands of its own);
the recogniser's prompt holds the lab's device names and verbs only.

The devices are offline (no simulator runs), so a command is understood, checked and
refused as offline rather than sent: the turn's time is the voice path's and the
understanding's, without a device's confirmation wait (``query.confirm_wait_seconds``).

Run:  .venv/bin/python benchmarks/voice_bench.py [--limit N] [--all-voices]
Writes benchmarks/results/voice_bench.json and prints its summary. Numbers depend on the
machine and on what else runs on it (the load average is recorded); compare runs on the
same one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from common import free_port, percentiles, wait_for_server

from kittylab import bootstrap
from kittylab.adapters.db.embedded import EmbeddedPostgres
from kittylab.config import Settings
from kittylab.manifest import apply_manifest, load_manifest
from kittylab.people import identity

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.integration.voice_audio import speak, wav_seconds  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "voice_bench.json"
CORPUS = ROOT / "tests" / "data" / "conversation" / "spoken_commands.jsonl"
VOICES = [("en-us", 160), ("en-us+f3", 175), ("en-gb-x-rp", 150), ("en-us+m3", 140)]
"""espeak-ng voice and words per minute; utterance i is spoken with VOICES[i % 4] (every
voice with ``--all-voices``)."""


def _utterances(limit: int | None, all_voices: bool) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]
    entries = entries[:limit] if limit else entries
    runs = []
    for i, entry in enumerate(entries):
        chosen = VOICES if all_voices else [VOICES[i % len(VOICES)]]
        runs += [{**entry, "voice": v, "speed": s} for v, s in chosen]
    return runs


class HealthProbe:
    """``GET /healthz`` once a second while the voice turns run."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as http:
            while not self._stop.wait(1.0):
                start = time.perf_counter()
                r = http.get("/healthz")
                if r.status_code == 200:
                    self.samples.append((time.perf_counter() - start) * 1000)


def _turn(http: httpx.Client, wav: bytes) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    r = http.post(
        "/api/voice/turn",
        content=wav,
        headers={"content-type": "audio/wav"},
        params={"channel": "wall_terminal"},
    )
    return r, time.perf_counter() - start


def run(base: str, token: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
        # The first spoken turn loads (and, once per machine, assembles) the model; a typed
        # turn the grammar is unsure of loads the semantic stage's encoder.
        r, cold = _turn(http, speak("status of the voron"))
        assert r.status_code < 300, r.text
        r = http.post(
            "/api/query",
            json={"channel": "cli", "input": {"text": "could the farm lights maybe glow a bit"}},
        )
        assert r.status_code < 300, r.text
        idle_health = []
        for _ in range(20):
            start = time.perf_counter()
            http.get("/healthz")
            idle_health.append((time.perf_counter() - start) * 1000)
        with HealthProbe(base) as probe:
            for entry in runs:
                wav = speak(entry["text"], voice=entry["voice"], speed=entry["speed"])
                seconds = wav_seconds(wav)
                r, elapsed = _turn(http, wav)
                if r.status_code >= 300:
                    rows.append({**entry, "status": r.status_code, "error": r.text[:300]})
                    continue
                body = r.json()
                routing = body["routing"]
                # The same words typed: tells a mishearing from a misunderstanding.
                typed = http.post(
                    "/api/query", json={"channel": "cli", "input": {"text": entry["text"]}}
                ).json()["routing"]
                speech = body["speech"]
                expected_args = entry.get("args")
                rows.append(
                    {
                        "text": entry["text"],
                        "voice": entry["voice"],
                        "speed": entry["speed"],
                        "expected": [entry["intent"], entry["device"]],
                        "transcript": body["transcript"],
                        "got": [routing["intent"], routing["device"]],
                        "outcome": routing["outcome"],
                        "right": [routing["intent"], routing["device"]]
                        == [entry["intent"], entry["device"]]
                        and routing["outcome"] != "clarification",
                        "clarified": routing["outcome"] == "clarification",
                        "args_right": None
                        if expected_args is None
                        else routing["args"] == expected_args,
                        "reply": body["replies"][0]["text"][:200] if body["replies"] else None,
                        "typed_right": [typed["intent"], typed["device"]]
                        == [entry["intent"], entry["device"]],
                        "status": r.status_code,
                        "utterance_s": round(seconds, 3),
                        "stt_rtf": round(speech["transcribeMs"] / 1000 / seconds, 3),
                        "turn_ratio": round(elapsed / seconds, 3),
                        "turn_ms": round(elapsed * 1000),
                        "stt_ms": speech["transcribeMs"],
                        "speak_ms": speech["speakMs"],
                    }
                )
    scored = [r for r in rows if "right" in r]
    rtf = [r["stt_rtf"] for r in scored]
    ratio = [r["turn_ratio"] for r in scored]
    right = sum(1 for r in scored if r["right"])
    return {
        "summary": {
            "utterances": len(rows),
            "failed_requests": len(rows) - len(scored),
            "right_intent_and_device": right,
            "right_share": round(right / len(rows), 3) if rows else 0.0,
            "target_right_share": 0.9,
            "clarifying_questions": sum(1 for r in scored if r["clarified"]),
            "with_arguments_right": f"{sum(1 for r in scored if r['right'] and r['args_right'])}"
            f"/{sum(1 for r in scored if r['args_right'] is not None)}",
            "typed_right_share": round(sum(1 for r in scored if r["typed_right"]) / len(rows), 3)
            if rows
            else 0.0,
            "heard_wrong_typed_right": sum(
                1 for r in scored if r["typed_right"] and not r["right"]
            ),
            "stt_real_time_factor": _spread(rtf),
            "target_stt_rtf": 0.5,
            "turn_over_utterance": _spread(ratio),
            "target_turn_over_utterance": 0.8,
            "utterance_seconds_median": round(
                statistics.median(r["utterance_s"] for r in scored), 2
            )
            if scored
            else None,
            "cold_first_turn_s": round(cold, 2),
            "healthz_idle": percentiles(idle_health),
            "healthz_during_voice_turns": percentiles(probe.samples) if probe.samples else None,
            "by_voice": _by_voice(scored),
        },
        "utterances": rows,
    }


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 3),
        "p90": round(ordered[max(0, int(len(ordered) * 0.9) - 1)], 3),
        "max": round(ordered[-1], 3),
    }


def _by_voice(rows: list[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, list[bool]] = {}
    for r in rows:
        out.setdefault(f"{r['voice']}@{r['speed']}", []).append(r["right"])
    return {k: f"{sum(v)}/{len(v)}" for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None, help="only the first N commands")
    parser.add_argument("--all-voices", action="store_true", help="every command in every voice")
    parser.add_argument("--threads", type=int, default=2, help="speech-to-text CPU threads")
    args = parser.parse_args()
    runs = _utterances(args.limit, args.all_voices)
    with tempfile.TemporaryDirectory() as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        url = pg.start()
        try:
            bootstrap.upgrade_database(url)
            settings = Settings(data_dir=Path(tmp), _env_file=None)  # type: ignore[call-arg]
            with bootstrap.application(settings, url) as c, c.database.unit_of_work() as s:
                apply_manifest(s, load_manifest(ROOT / "examples" / "lab.yaml"), c.clock())
                token = identity.issue_token(s, identity.find_user_by_username(s, "olivia")).token
            port = free_port()
            env = {
                **os.environ,
                "KITTYLAB_DATABASE_URL": url,
                "KITTYLAB_DATA_DIR": str(Path(tmp) / "data"),
                "KITTYLAB_SIMULATOR__ENABLED": "false",
                "KITTYLAB_JOBS__RUN_IN_SERVER": "false",
                "KITTYLAB_QUERY__MODEL__BACKEND": "none",
                "KITTYLAB_VOICE__STT__THREADS": str(args.threads),
                "KITTYLAB_LOG_LEVEL": "WARNING",
            }
            server = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                [sys.executable, "-m", "kittylab.cli", "serve", "--port", str(port),
                 "--no-workers"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                base = f"http://127.0.0.1:{port}"
                wait_for_server(base + "/healthz", server)
                results = run(base, token, runs)
            finally:
                server.terminate()
                server.wait(timeout=30)
        finally:
            pg.stop()
    results["machine"] = {
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "stt_threads": args.threads,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "query_model_backend": "none (grammar and the stages before the model)",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["summary"], indent=2))


if __name__ == "__main__":
    main()
