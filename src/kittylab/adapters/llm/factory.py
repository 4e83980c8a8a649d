"""Build the model adapters the settings ask for. Called by bootstrap only."""

from __future__ import annotations

from collections.abc import Sequence

from kittylab.config import FrontierSettings, McpServerSettings, Settings
from kittylab.conversation.ports import Answerer
from kittylab.conversation.understanding.model import IntentModel
from kittylab.conversation.understanding.semantic import SemanticSettings, SemanticStage
from kittylab.domain.errors import ValidationFailed


def local_model(settings: Settings) -> IntentModel | None:
    q = settings.query.model
    if q.backend == "none":
        return None
    if q.backend == "openai":
        from kittylab.adapters.llm.openai_local import OpenAICompatibleIntentModel

        if not q.url:
            raise ValidationFailed(
                "KITTYLAB_QUERY__MODEL__URL", "is required for the openai backend"
            )
        return OpenAICompatibleIntentModel(q.url, q.model, q.timeout_seconds)
    from kittylab.adapters.llm.llama import EmbeddedLlama, default_model_path

    path = q.model_path or default_model_path()
    return EmbeddedLlama(path, threads=q.threads, timeout_seconds=q.timeout_seconds)


def semantic_stage(settings: Settings) -> SemanticStage | None:
    """The semantic stage on the bundled MiniLM encoder; loads on first use."""
    q = settings.query.semantic
    if not q.enabled:
        return None
    from kittylab.adapters.llm.minilm import MiniLmEncoder

    encoder = MiniLmEncoder(threads=q.threads)
    return SemanticStage(encoder, SemanticSettings(threshold=q.threshold, margin=q.margin))


def frontier_answerer(settings: FrontierSettings) -> Answerer | None:
    if settings.provider == "none":
        return None
    from kittylab.adapters.llm.frontier import AnthropicMessages, OpenAIChat

    key = settings.api_key.get_secret_value() if settings.api_key else None
    if not settings.url or not settings.model:
        raise ValidationFailed(
            "KITTYLAB_QUERY__FRONTIER__URL", "the frontier tier needs a URL and a model (__MODEL)"
        )
    cls = OpenAIChat if settings.provider == "openai" else AnthropicMessages
    return cls(
        base_url=settings.url,
        model=settings.model,
        api_key=key,
        timeout_seconds=settings.timeout_seconds,
        max_output_tokens=settings.max_output_tokens,
    )


def mcp_answerers(servers: Sequence[McpServerSettings]) -> list[Answerer]:
    from kittylab.adapters.llm.mcp_client import McpToolAnswerer

    return [McpToolAnswerer(server) for server in servers]
