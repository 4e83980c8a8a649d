"""Speech adapters of the voice turn: audio decoding (PyAV), speech-to-text
(faster-whisper with Whisper base, in-process) and text-to-speech (espeak-ng)."""
