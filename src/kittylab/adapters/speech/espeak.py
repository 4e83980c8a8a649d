"""Text-to-speech with espeak-ng (Debian's ``espeak-ng``), run as a program: the reply goes
in on standard input (never as an argument, so no text can pass for an option) and a WAV
file comes out on standard output. Small, local and fast (tens of milliseconds for a
sentence); robotic, but clear on a workshop floor."""

from __future__ import annotations

import subprocess

from kittylab.conversation.ports import SpeechUnavailable


class EspeakNg:
    def __init__(
        self,
        *,
        program: str = "espeak-ng",
        voice: str = "en-us",
        words_per_minute: int = 165,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.program = program
        self.voice = voice
        self.words_per_minute = words_per_minute
        self.timeout_seconds = timeout_seconds
        self.name = f"espeak-ng:{voice}"

    def speak(self, text: str) -> bytes:
        command = [
            self.program,
            "-v",
            self.voice,
            "-s",
            str(self.words_per_minute),
            "--stdin",
            "--stdout",
        ]
        try:
            done = subprocess.run(  # noqa: S603 - a fixed program and our own options
                command,
                input=text.encode("utf-8", "replace"),
                capture_output=True,
                timeout=self.timeout_seconds,
                check=False,
            )
        except FileNotFoundError as exc:
            raise SpeechUnavailable(
                f"{self.program} is not installed (Debian: apt-get install espeak-ng)"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise SpeechUnavailable(f"espeak-ng took over {self.timeout_seconds:g} s") from exc
        wav = done.stdout
        if done.returncode != 0 or wav[:4] != b"RIFF":
            reason = done.stderr.decode("utf-8", "replace").strip()[:200] or "no WAV output"
            raise SpeechUnavailable(f"espeak-ng failed ({done.returncode}): {reason}")
        return wav
