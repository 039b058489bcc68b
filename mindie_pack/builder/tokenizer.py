"""Choose how MindFormers builds the tokenizer and which files go into the model directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mindie_pack.builder.hf_model import read_json
from mindie_pack.errors import PackError
from mindie_pack.models import ModelFamily, TokenizerChoice

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "tokenizer.model", "vocab.txt",
)
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token")


@dataclass
class TokenizerPlan:
    choice: TokenizerChoice
    files: list[Path]  # HF files copied into the model directory
    research_file: Path | None = None  # .py from the MindFormers checkout, when the choice needs one
    fields: dict[str, Any] = field(default_factory=dict)  # processor.tokenizer keys besides `type`

    @property
    def auto_map(self) -> list[str | None] | None:
        if self.choice.research_module is None:
            return None
        return [f"{self.choice.research_module}.{self.choice.type}", None]


def _special_tokens(hf_dir: Path) -> dict[str, Any]:
    config_path = hf_dir / "tokenizer_config.json"
    if not config_path.is_file():
        return {}
    config = read_json(config_path)
    fields: dict[str, Any] = {}
    for key in SPECIAL_TOKENS:
        token = config.get(key)
        if isinstance(token, dict):
            token = token.get("content")
        if isinstance(token, str):
            fields[key] = token
    if isinstance(config.get("chat_template"), str):
        fields["chat_template"] = config["chat_template"]
    return fields


def research_file(mindformers_src: Path, family: ModelFamily, module: str) -> Path:
    path = mindformers_src / (family.research_dir() or "research") / f"{module}.py"
    if not path.is_file():
        raise PackError(f"{path}: missing from the MindFormers source checkout given by --mindformers-src")
    return path


def check_tokenizer_files(hf_dir: Path) -> None:
    """The tokenizer files MindIE will load must be readable: tokenizer.json by the `tokenizers` library (the
    loader of HF fast tokenizers), tokenizer_config.json as JSON. A broken one is refused here, naming the file,
    instead of failing at the daemon's start."""
    import json

    config = hf_dir / "tokenizer_config.json"
    if config.is_file():
        try:
            json.loads(config.read_text())
        except (UnicodeDecodeError, ValueError) as exc:
            raise PackError(f"{config}: not valid JSON ({exc})") from None
    tokenizer = hf_dir / "tokenizer.json"
    if tokenizer.is_file():
        from tokenizers import Tokenizer

        try:
            Tokenizer.from_file(str(tokenizer))
        except Exception as exc:  # the library raises its own error types (Rust side) for any malformed file
            first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
            raise PackError(f"{tokenizer}: the tokenizers library cannot load it ({first})") from None


def plan_tokenizer(
    family: ModelFamily, hf_dir: Path, mindformers_src: Path | None, *, require_research: bool
) -> TokenizerPlan:
    """Pick the tokenizer MindFormers will build.

    With a MindFormers checkout, the family's research tokenizer (Qwen2Tokenizer, Baichuan2Tokenizer) is
    used exactly as the official yamls do. Without one, a built-in class is chosen: LlamaTokenizer for a
    SentencePiece tokenizer.model, else LlamaTokenizerFast over tokenizer.json (any HF fast tokenizer).
    """
    present = [hf_dir / name for name in TOKENIZER_FILES if (hf_dir / name).is_file()]
    check_tokenizer_files(hf_dir)
    names = {p.name for p in present}
    research = family.research_tokenizer()
    if research is not None and (mindformers_src is not None or require_research):
        if mindformers_src is None:
            raise PackError(
                f"{family.description} needs {family.research_dir()}/{research.research_module}.py: "
                "pass --mindformers-src DIR (a MindFormers source checkout)"
            )
        missing = [f for f in research.files.values() if f not in names]
        if missing:
            raise PackError(f"{hf_dir}: tokenizer file {missing[0]} is missing (needed by {research.type})")
        source = research_file(mindformers_src, family, research.research_module or "")
        return _plan(research, present, hf_dir, source)
    if family.name == "llama" and "tokenizer.model" in names and _is_sentencepiece(hf_dir / "tokenizer.model"):
        return _plan(TokenizerChoice("LlamaTokenizer", {"vocab_file": "tokenizer.model"}), present, hf_dir, None)
    if "tokenizer.json" in names:
        files = {"tokenizer_file": "tokenizer.json"}
        if "tokenizer.model" in names and _is_sentencepiece(hf_dir / "tokenizer.model"):
            files["vocab_file"] = "tokenizer.model"
        return _plan(TokenizerChoice("LlamaTokenizerFast", files), present, hf_dir, None)
    raise PackError(
        f"{hf_dir}: no usable tokenizer (expected tokenizer.json, a SentencePiece tokenizer.model, or "
        "vocab.json + merges.txt with --mindformers-src)"
    )


def _plan(choice: TokenizerChoice, present: list[Path], hf_dir: Path, source: Path | None) -> TokenizerPlan:
    return TokenizerPlan(choice=choice, files=present, research_file=source, fields=_special_tokens(hf_dir))


def _is_sentencepiece(path: Path) -> bool:
    # A SentencePiece model is a protobuf starting with field 1 (pieces, length-delimited): byte 0x0A.
    # Llama 3's tiktoken "tokenizer.model" is base64 text lines instead.
    with path.open("rb") as handle:
        return handle.read(1) == b"\x0a"
