"""Audio decoding with PyAV (FFmpeg's demuxers and decoders, shipped in the ``av`` wheel
that faster-whisper depends on): WAV (PCM), WebM and Ogg (Opus, Vorbis) to 16 kHz mono
float32, as Whisper takes it."""

from __future__ import annotations

import io
import math
from typing import Any

from kittylab.conversation.ports import AudioTooLong, AudioUndecodable, DecodedAudio

SAMPLE_RATE = 16_000
_WINDOW = SAMPLE_RATE // 50  # 20 ms: the loudness of speech, not of a single click
_DEMUXERS = {"wav": "wav", "webm": "matroska", "ogg": "ogg"}


class PyAvDecoder:
    def decode(self, data: bytes, container: str, *, max_seconds: float) -> DecodedAudio:
        import av
        import numpy as np

        demuxer = _DEMUXERS.get(container)
        if demuxer is None:
            raise AudioUndecodable(f"unknown container {container!r}")
        limit = int(max_seconds * SAMPLE_RATE)
        chunks: list[Any] = []
        total = 0
        try:
            with av.open(io.BytesIO(data), mode="r", format=demuxer) as box:
                if not box.streams.audio:
                    raise AudioUndecodable("it holds no audio stream")
                stream = box.streams.audio[0]
                resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
                for frame in box.decode(stream):
                    for out in resampler.resample(frame):
                        chunk = out.to_ndarray().reshape(-1)
                        chunks.append(chunk)
                        total += chunk.size
                    if total > limit:
                        # Stop here: a small compressed file may hold hours of audio.
                        raise AudioTooLong
                for out in resampler.resample(None):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += chunk.size
        except (av.error.FFmpegError, ValueError, EOFError, IndexError) as exc:
            raise AudioUndecodable(_reason(exc)) from exc
        if total > limit:
            raise AudioTooLong
        if total == 0:
            raise AudioUndecodable("it holds no audio samples")
        samples = np.clip(np.concatenate(chunks).astype(np.float32), -1.0, 1.0)
        return DecodedAudio(
            samples=samples.astype("<f4").tobytes(),
            sample_rate=SAMPLE_RATE,
            seconds=samples.size / SAMPLE_RATE,
            peak_dbfs=_peak_dbfs(samples),
        )


def _peak_dbfs(samples: Any) -> float:
    """The RMS level of the loudest 20 ms window, in dB below full scale."""
    import numpy as np

    usable = samples.size - samples.size % _WINDOW
    windows = samples[:usable].reshape(-1, _WINDOW) if usable else samples.reshape(1, -1)
    rms = float(np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1)).max())
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    # FFmpeg's messages name the in-memory file as "<none>": say what matters.
    return text.replace("'<none>'", "").replace(": <none>", "")[:200]


def trim_silence(
    samples: Any,
    *,
    below_peak_db: float = 40.0,
    margin_seconds: float = 0.2,
    lead_seconds: float = 0.6,
) -> Any:
    """``samples`` (16 kHz float32) without the silence before and after the speech (the
    20 ms windows quieter than ``below_peak_db`` under the loudest one), keeping
    ``margin_seconds`` on either side, then ``lead_seconds`` of silence put before it.
    The recogniser then hears the utterance near the start of its window, as it expects,
    after a pause: without one, Whisper often misses a command's first sound ("lock" for
    "unlock"; ``benchmarks/voice_tune.py``: 216/250 right without, 227/250 with 0.6 s)."""
    import numpy as np

    usable = samples.size - samples.size % _WINDOW
    if usable < 2 * _WINDOW:
        return samples
    windows = samples[:usable].reshape(-1, _WINDOW)
    rms = np.sqrt(np.mean(np.square(windows, dtype=np.float64), axis=1))
    peak = float(rms.max())
    if peak <= 0:
        return samples
    loud = np.flatnonzero(rms >= peak * 10 ** (-below_peak_db / 20))
    margin = int(margin_seconds * SAMPLE_RATE)
    start = max(0, int(loud[0]) * _WINDOW - margin)
    end = min(samples.size, (int(loud[-1]) + 1) * _WINDOW + margin)
    lead = np.zeros(int(lead_seconds * SAMPLE_RATE), dtype=samples.dtype)
    return np.concatenate([lead, samples[start:end]])
