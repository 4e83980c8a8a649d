"""Audio for the voice tests and the voice benchmark: phrases spoken by espeak-ng (the
real program), tones and silence made here, and WAV re-encoded as Ogg or WebM Opus with
PyAV, as a browser records it."""

from __future__ import annotations

import io
import math
import struct
import subprocess
import wave


def speak(text: str, *, voice: str = "en-us", speed: int = 160) -> bytes:
    """``text`` spoken by espeak-ng, as a WAV file (22.05 kHz mono)."""
    done = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdin", "--stdout"],
        input=text.encode(),
        capture_output=True,
        check=True,
        timeout=30,
    )
    return done.stdout


def pcm_wav(samples: list[float], rate: int = 16_000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(s * 32767)) for s in samples))
    return out.getvalue()


def silence(seconds: float, rate: int = 16_000) -> bytes:
    return pcm_wav([0.0] * int(seconds * rate), rate)


def tone(seconds: float, rate: int = 8_000, level: float = 0.3) -> bytes:
    return pcm_wav(
        [level * math.sin(2 * math.pi * 440 * i / rate) for i in range(int(seconds * rate))],
        rate,
    )


def wav_seconds(wav: bytes) -> float:
    """The length of a WAV file, counted from its samples (espeak-ng's streamed header
    does not say it)."""
    import av

    with av.open(io.BytesIO(wav), format="wav") as box:
        stream = box.streams.audio[0]
        samples = sum(frame.samples for frame in box.decode(stream))
        return samples / stream.rate


def opus(wav: bytes, container: str) -> bytes:
    """``wav`` re-encoded as Opus in ``container`` (``ogg`` or ``webm``)."""
    import av

    out = io.BytesIO()
    with (
        av.open(io.BytesIO(wav), format="wav") as source,
        av.open(out, mode="w", format=container) as target,
    ):
        stream = target.add_stream("libopus", rate=48_000)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48_000)
        for frame in source.decode(source.streams.audio[0]):
            for resampled in resampler.resample(frame):
                for packet in stream.encode(resampled):
                    target.mux(packet)
        for packet in stream.encode(None):
            target.mux(packet)
    return out.getvalue()
