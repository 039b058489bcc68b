"""The official `openai` client and huggingface_hub's InferenceClient, unmodified, against the emulator daemon over
real HTTP: what works with them against MindIE must work against the stand-in."""

from __future__ import annotations

from collections.abc import Iterator

import huggingface_hub  # dev dependencies: imported, never skipped
import openai
import pytest

from mindie_pack.emulator.install import install_emulator

from deploy_helpers import build_tiny, free_port_block
from emulator_helpers import model_name, running_daemon, write_config_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    root = tmp_path_factory.mktemp("official")
    _, model_dir = build_tiny(root, tp=1)
    service = install_emulator(root / "Ascend", fake_model=True).mindie_service
    port = free_port_block()
    config = write_config_for(model_dir, root / "config.json", port, "ScheduleConfig.maxIterTimes=33")
    with running_daemon(service, root / "config.json"), pytest.MonkeyPatch.context() as patch:
        patch.setenv("NO_PROXY", "127.0.0.1,localhost")  # the clients honour proxy variables: loopback only
        patch.setenv("no_proxy", "127.0.0.1,localhost")
        yield f"http://127.0.0.1:{port}", model_name(config)


@pytest.fixture
def client(server: tuple[str, str]) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", timeout=60, max_retries=0) as api:
        yield api


def test_openai_models(client: openai.OpenAI, server: tuple[str, str]) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [server[1]]
    assert models.data[0].owned_by == "MindIE Server"
    card = client.models.retrieve(server[1])
    assert card.id == server[1] and card.object == "model" and isinstance(card.created, int)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_openai_chat(client: openai.OpenAI, server: tuple[str, str]) -> None:
    messages = [{"role": "user", "content": "I love Beijing, because"}]
    reply = client.chat.completions.create(model=server[1], messages=messages, max_tokens=25)  # type: ignore[arg-type]
    assert reply.choices[0].finish_reason == "length" and reply.choices[0].message.role == "assistant"
    assert reply.usage is not None and reply.usage.completion_tokens == 25  # above the old cap of 16
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 25
    default = client.chat.completions.create(model=server[1], messages=messages)  # type: ignore[arg-type]
    assert default.usage is not None and default.usage.completion_tokens == 33  # maxIterTimes

    chunks = list(client.chat.completions.create(model=server[1], messages=messages,  # type: ignore[arg-type]
                                                 max_tokens=7, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == client.chat.completions.create(model=server[1], messages=messages,  # type: ignore[arg-type]
                                                  max_tokens=7).choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="other", messages=messages)  # type: ignore[arg-type]


def test_openai_completions(client: openai.OpenAI, server: tuple[str, str]) -> None:
    reply = client.completions.create(model=server[1], prompt="I love Beijing, because", max_tokens=21)
    assert reply.usage is not None and reply.usage.completion_tokens == 21
    assert reply.choices[0].finish_reason == "length" and reply.choices[0].text
    chunks = list(client.completions.create(model=server[1], prompt="I love Beijing, because", max_tokens=9,
                                            stream=True))
    assert "".join(c.choices[0].text for c in chunks) == client.completions.create(
        model=server[1], prompt="I love Beijing, because", max_tokens=9).choices[0].text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 9


def test_huggingface_text_generation(server: tuple[str, str]) -> None:
    hf = huggingface_hub.InferenceClient(base_url=server[0], timeout=60)
    plain = hf.text_generation("I love Beijing, because", max_new_tokens=24)
    assert isinstance(plain, str) and len(plain.split()) == 24  # the fake model: one word per token
    detailed = hf.text_generation("I love Beijing, because", max_new_tokens=24, details=True)
    assert detailed.generated_text == plain
    assert detailed.details is not None and detailed.details.generated_tokens == 24
    assert detailed.details.finish_reason == "length"
    streamed = list(hf.text_generation("I love Beijing, because", max_new_tokens=24, stream=True))
    assert "".join(streamed) == plain  # the final event carries the last token
    events = list(hf.text_generation("I love Beijing, because", max_new_tokens=24, stream=True, details=True))
    assert len(events) == 24 and events[-1].generated_text == plain
    assert events[-1].details is not None and events[-1].details.generated_tokens == 24
