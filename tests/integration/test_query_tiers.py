"""The tier clients against real peers: an MCP server (stdio and streamable HTTP, from the
official SDK), llama.cpp's OpenAI-compatible server running the Gemma GGUF, the embedded
llama.cpp model, and a protocol-level Anthropic Messages server (Anthropic's API cannot
run here; the stand-in follows its documented request and response shapes)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from kittylab import bootstrap
from kittylab.adapters.db.engine import Database
from kittylab.adapters.llm.frontier import AnthropicMessages, OpenAIChat
from kittylab.adapters.llm.llama import EmbeddedLlama, default_model_path, ensure_model_file
from kittylab.adapters.llm.mcp_client import McpToolAnswerer
from kittylab.adapters.llm.openai_local import OpenAICompatibleIntentModel
from kittylab.config import McpServerSettings
from kittylab.conversation.lab import vocabulary_from_manifest
from kittylab.conversation.understanding.context import ConversationContext
from kittylab.conversation.understanding.model import ModelUnavailable
from kittylab.conversation.understanding.types import INTENTS
from kittylab.conversation.understanding.vocabulary import LabVocabulary, build_vocabulary
from kittylab.manifest.loader import load_manifest
from tests.integration.conftest import Person
from tests.integration.test_query_api import _apply_without_people
from tests.peers import anthropic_server

ROOT = Path(__file__).resolve().parents[2]
PEERS = ROOT / "tests" / "peers"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(url: str, seconds: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds}s")


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The Gemma GGUF, assembled once from the installed package into the cache."""
    return ensure_model_file(default_model_path())


@pytest.fixture(scope="module")
def vocabulary() -> LabVocabulary:
    """A three-device lab: a short prompt keeps the model tests quick on a shared CPU."""
    demo = vocabulary_from_manifest(load_manifest(ROOT / "examples" / "lab.yaml"))
    keep = {"voron-24", "farm-lights", "cnc-door"}
    return build_vocabulary([d for d in demo.devices if d.external_id in keep],
                            {z.name: z.hazardous_intents for z in demo.zones})  # fmt: skip


@pytest.fixture(scope="module")
def llama_server(model_path: Path) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on the Gemma GGUF; its base URL."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            "1",
            "--model_alias",
            "gemma-3-270m",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/v1/models", 120, proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def mcp_http_url() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(PEERS / "mcp_price_server.py"), "http", str(port)], cwd=ROOT
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/", 30, proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def anthropic_url() -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            anthropic_server.create_app(), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        _wait_for(f"http://127.0.0.1:{port}/docs", 20)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _stdio(tool: str = "lookup", timeout: float = 30) -> McpToolAnswerer:
    return McpToolAnswerer(
        McpServerSettings(
            name="prices",
            transport="stdio",
            tool=tool,
            timeout_seconds=timeout,
            command=[sys.executable, str(PEERS / "mcp_price_server.py"), "stdio"],
            cost_per_call=Decimal("0.001"),
        )
    )


# -- MCP ---------------------------------------------------------------------------------


def test_mcp_stdio_tool_answers_a_price_question_at_its_fixed_cost() -> None:
    answer = _stdio().answer("what do titanium powder prices look like this week?")
    assert "310 USD/kg" in answer.text
    assert answer.fixed_cost == Decimal("0.001")
    assert answer.model == "mcp:prices/lookup"


def test_mcp_streamable_http_tool_answers(mcp_http_url: str) -> None:
    answerer = McpToolAnswerer(
        McpServerSettings(name="prices-http", transport="http", url=mcp_http_url, tool="lookup")
    )
    assert "Argon" in answerer.answer("price of argon refills").text


def test_mcp_tool_error_becomes_model_unavailable() -> None:
    with pytest.raises(ModelUnavailable, match="reported an error"):
        _stdio(tool="broken").answer("anything")


def test_mcp_unreachable_http_server_is_model_unavailable() -> None:
    answerer = McpToolAnswerer(
        McpServerSettings(
            name="down",
            transport="http",
            url=f"http://127.0.0.1:{_free_port()}/mcp",
            tool="lookup",
            timeout_seconds=5,
        )
    )
    started = time.monotonic()
    with pytest.raises(ModelUnavailable):
        answerer.answer("price of pla")
    assert time.monotonic() - started < 10


# -- frontier: Anthropic Messages (protocol-level server) --------------------------------


def _anthropic(
    url: str, key: str = anthropic_server.API_KEY, timeout: float = 10
) -> AnthropicMessages:
    return AnthropicMessages(
        base_url=url,
        model="claude-test",
        api_key=key,
        timeout_seconds=timeout,
        max_output_tokens=64,
    )


def test_anthropic_messages_answer_reports_usage(anthropic_url: str) -> None:
    answer = _anthropic(anthropic_url).answer("is titanium hard to print?")
    assert answer.text.startswith("Titanium is strong")
    assert answer.model == "claude-test"
    assert answer.input_tokens > 0 and answer.output_tokens == 9


def test_anthropic_bad_key_is_model_unavailable_with_the_api_message(anthropic_url: str) -> None:
    with pytest.raises(ModelUnavailable, match="HTTP 401: invalid x-api-key"):
        _anthropic(anthropic_url, key="wrong").answer("hi")


def test_anthropic_timeout_is_model_unavailable(anthropic_url: str) -> None:
    with pytest.raises(ModelUnavailable, match="timed out"):
        _anthropic(anthropic_url, timeout=1).answer("__slow__")


# -- frontier and local model on llama.cpp's OpenAI-compatible server -------------------


def test_openai_chat_against_llama_cpp_server_reports_token_usage(llama_server: str) -> None:
    client = OpenAIChat(
        base_url=llama_server,
        model="gemma-3-270m",
        api_key="unused",
        timeout_seconds=120,
        max_output_tokens=8,
    )
    answer = client.answer("Name one 3D printing material.")
    assert answer.text
    assert answer.input_tokens > 0 and 0 < answer.output_tokens <= 8


def test_openai_compatible_local_model_reads_a_request(
    llama_server: str, vocabulary: LabVocabulary
) -> None:
    model = OpenAICompatibleIntentModel(llama_server, "gemma-3-270m", timeout_seconds=120)
    reading = model.read("pause the voron", vocabulary, ConversationContext())
    assert reading.intent in INTENTS
    assert 0 < reading.confidence <= 1


# -- the embedded model ------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded(model_path: Path, vocabulary: LabVocabulary) -> EmbeddedLlama:
    model = EmbeddedLlama(model_path, threads=1, timeout_seconds=120, n_ctx=2048)
    model.warm_up(vocabulary)
    return model


def test_embedded_model_scores_every_intent_into_a_distribution(
    embedded: EmbeddedLlama, vocabulary: LabVocabulary
) -> None:
    reading = embedded.read("could you pause the voron printer", vocabulary, ConversationContext())
    assert set(reading.scores) == set(INTENTS)
    assert sum(reading.scores.values()) == pytest.approx(1.0)
    assert reading.confidence == max(reading.scores.values())
    assert reading.device is None or vocabulary.device(reading.device) is not None


def test_cold_embedded_model_answers_unavailable_at_once_and_gets_ready_in_the_background(
    model_path: Path, vocabulary: LabVocabulary
) -> None:
    cold = EmbeddedLlama(model_path, threads=1, timeout_seconds=120, n_ctx=2048)
    started = time.monotonic()
    with pytest.raises(ModelUnavailable, match="getting ready"):
        cold.read("could you pause the voron printer", vocabulary, ConversationContext())
    assert time.monotonic() - started < 1
    deadline = time.monotonic() + 180
    while True:
        try:
            reading = cold.read(
                "could you pause the voron printer", vocabulary, ConversationContext()
            )
            break
        except ModelUnavailable:
            assert time.monotonic() < deadline, "the model never got ready"
            time.sleep(0.5)
    assert reading.intent in INTENTS


def test_embedded_model_that_runs_out_of_time_is_model_unavailable(
    embedded: EmbeddedLlama, vocabulary: LabVocabulary
) -> None:
    embedded.timeout_seconds = 0.001
    try:
        with pytest.raises(ModelUnavailable, match="timed out"):
            embedded.read("the voron needs to pause", vocabulary, ConversationContext())
    finally:
        embedded.timeout_seconds = 120


# -- end to end: the API with a real MCP tier ---------------------------------------------


def test_query_api_answers_a_fresh_data_question_through_the_mcp_server(
    container: bootstrap.Container, client: TestClient, database: Database,
    demo_lab_path: Path, operator: Person,
) -> None:  # fmt: skip
    _apply_without_people(database, container, demo_lab_path)
    settings = container.settings.model_copy(deep=True)
    settings.query.model.backend = "none"
    settings.query.mcp_servers = [_stdio().settings]
    container.query = bootstrap.query_service(settings, database, container.jobs, None)
    r = client.post(
        "/api/query",
        json={"channel": "ipad", "input": {"text": "titanium powder prices this week?"}},
        headers=operator.headers,
    )
    body = r.json()
    assert r.status_code == 200, body
    assert body["routing"]["selectedTier"] == "mcp"
    assert "310 USD/kg" in body["replies"][0]["text"]
    assert Decimal(str(body["routing"]["costEstimate"])) == Decimal("0.001")
