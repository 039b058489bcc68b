"""smoke, bench and the stream decoder against transcripts of MindIE 2.3.0's real formats (tests/fixtures/wire/,
each citing the response builder it was written from), replayed over loopback without our emulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from wire_replay import load_fixtures, replay_app, serving

from mindie_pack.wire.stream import decode_all

from conftest import CliResult

Cli = Callable[..., CliResult]
API_OF_PATH = {"/generate_stream": "tgi", "/infer": "infer", "/generate": "vllm",
               "/v1/chat/completions": "openai-chat", "/v1/completions": "openai-completions"}
STREAMS = [f for f in load_fixtures() if "frames" in f["response"]]


def _expected(fixture: dict[str, Any]) -> tuple[str, int]:
    n = fixture["request"]["max_tokens"]
    return {1: " it", 3: " it is the", 4: " it is the capital"}[n], n


@pytest.mark.parametrize("fixture", STREAMS, ids=[f["name"] for f in STREAMS])
def test_decoder_reads_every_real_stream_shape(fixture: dict[str, Any]) -> None:
    api = API_OF_PATH[fixture["request"]["path"]]
    frames = fixture["response"]["frames"]
    text, tokens = _expected(fixture)
    whole = decode_all(api, frames)
    one_char_at_a_time = decode_all(api, list("".join(frames)))
    for result in (whole, one_char_at_a_time):
        assert result.problems == [] and result.mismatch is None
        assert result.finished
        assert result.text == text  # nothing lost: not the last token, not the /infer text-null tail
        assert result.received_tokens == tokens
        if api != "vllm":
            assert result.finish_reason == "length" and result.output_tokens == tokens
    if api in ("tgi", "infer"):
        assert result.generated_text == text and len(result.token_ids) == tokens
    if api.startswith("openai"):
        assert result.done_marker
    if fixture["request"].get("variant") == "keepalive":
        assert result.keepalives == 3


def test_decoder_flags_a_final_text_that_contradicts_the_tokens() -> None:
    frames = ['data: {"token":{"id":1,"text":" a","logprob":null,"special":null},"generated_text":null,'
              '"details":null}\n\n',
              'data: {"token":{"id":2,"text":" b","logprob":null,"special":null},"generated_text":" a c",'
              '"details":null}\n\n']
    result = decode_all("tgi", frames)
    assert result.mismatch == "generated_text differs from the streamed tokens (' a c' vs ' a b')"
    assert result.problems == [] and result.received_tokens == 2


def _smoke(cli: Cli, url: str, *extra: str) -> tuple[int, dict[str, dict[str, Any]]]:
    result = cli("smoke", "--url", url, "--management-url", url, "--metrics-url", url, "--model", "llama3",
                 "--json", *extra)
    data = json.loads(result.stdout)
    return result.exit_code, {c["name"]: c for c in data["checks"]}


def test_smoke_passes_against_the_real_formats(cli: Cli) -> None:
    with serving(replay_app()) as url:
        code, checks = _smoke(cli, url, "--max-tokens", "3")
    assert code == 0, {n: c["detail"] for n, c in checks.items() if c["status"] != "passed"}
    assert all(c["status"] == "passed" for c in checks.values())
    assert {n: c["tokens"] for n, c in checks.items() if c["tokens"] is not None} == {
        "generate": 3, "generate_stream": 3, "infer": 3, "infer_stream": 3, "chat": 3, "chat_stream": 3,
        "completions": 3}


@pytest.mark.parametrize("endpoint", ["openai-chat", "openai-completions", "tgi", "native", "vllm"])
@pytest.mark.parametrize("output_len", [1, 3])
def test_bench_counts_every_token_of_the_real_formats(endpoint: str, output_len: int, cli: Cli,
                                                      tmp_path: Path) -> None:
    with serving(replay_app()) as url:
        result = cli("bench", "--url", url, "--model", "llama3", "--endpoint", endpoint, "--concurrency", "2",
                     "--requests", "4", "--warmup", "0", "--output-len", str(output_len), "--json",
                     tmp_path / "b.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "b.json").read_text())
    assert summary["succeeded"] == 4 and summary["complete"] == 4 and summary["short"] == 0
    assert summary["output_tokens"] == summary["output_tokens_requested"] == 4 * output_len
    assert f"output tokens: requested {4 * output_len}, received {4 * output_len}" in result.stdout


@pytest.mark.parametrize(("variant", "tokens"), [("keepalive", 3), ("multitoken", 4)])
def test_bench_through_keepalives_and_multi_token_events(variant: str, tokens: int, cli: Cli, tmp_path: Path) -> None:
    with serving(replay_app(variant=variant)) as url:
        result = cli("bench", "--url", url, "--model", "llama3", "--concurrency", "1", "--requests", "2",
                     "--warmup", "0", "--output-len", str(tokens), "--json", tmp_path / "b.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "b.json").read_text())
    assert summary["complete"] == 2 and summary["output_tokens"] == 2 * tokens


def test_bench_flags_a_shortfall(cli: Cli, tmp_path: Path) -> None:
    with serving(replay_app()) as url:  # asks for 5, the server stops after 3
        result = cli("bench", "--url", url, "--model", "llama3", "--endpoint", "tgi", "--requests", "3",
                     "--warmup", "0", "--output-len", "5", "--json", tmp_path / "b.json")
    summary = json.loads((tmp_path / "b.json").read_text())
    assert summary["short"] == 3 and summary["complete"] == 0
    assert summary["output_tokens_requested"] == 15 and summary["output_tokens"] == 9
    assert "3 of 3 requests received fewer than --output-len 5 tokens" in result.stdout
    assert "0 complete, 3 short, 0 failed" in result.stdout


@pytest.mark.parametrize("mode", ["silent", "keepalive-forever"])
def test_smoke_and_bench_give_up_on_a_server_that_never_answers(mode: str, cli: Cli, tmp_path: Path) -> None:
    with serving(replay_app(mode=mode)) as url:
        code, checks = _smoke(cli, url, "--checks", "chat_stream,infer", "--timeout", "1")
        bench = cli("bench", "--url", url, "--model", "llama3", "--requests", "2", "--warmup", "1",
                    "--timeout", "1", "--json", tmp_path / "b.json")
    assert code == 1
    assert "no answer in 1 s" in checks["chat_stream"]["detail"]
    assert "no answer in 1 s" in checks["infer"]["detail"]
    assert bench.exit_code == 1
    assert json.loads((tmp_path / "b.json").read_text())["errors"] == {"no answer in 1 s": 2}
