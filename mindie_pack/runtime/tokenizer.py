"""The text side of a model directory: tokenizer (tokenizer.json, vocab.json+merges.txt or SentencePiece),
chat template from tokenizer_config.json, and the eos ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

from mindie_pack.builder.hf_model import read_json
from mindie_pack.errors import PackError


def _read_json(path: Path) -> dict[str, Any]:
    return read_json(path) if path.is_file() else {}


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):  # {"content": "<|im_end|>", ...}
        return value.get("content")
    return value if isinstance(value, str) else None


class TextTokenizer:
    """Encode/decode with the same files MindIE's tokenizer would read, plus the chat template."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.config = _read_json(model_dir / "tokenizer_config.json")
        self._sp: Any = None
        self._tok: Any = None
        if (model_dir / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        elif (model_dir / "vocab.json").is_file() and (model_dir / "merges.txt").is_file():
            self._tok = self._byte_level_bpe(model_dir)
        elif (model_dir / "tokenizer.model").is_file():
            import sentencepiece

            self._sp = sentencepiece.SentencePieceProcessor(model_file=str(model_dir / "tokenizer.model"))
        else:
            raise PackError(f"{model_dir}: no tokenizer (expected tokenizer.json, vocab.json + merges.txt, or "
                            "a SentencePiece tokenizer.model)")
        self.bos_token = _token_text(self.config.get("bos_token"))
        self.eos_token = _token_text(self.config.get("eos_token"))

    def _byte_level_bpe(self, model_dir: Path) -> Any:
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

        tokenizer = Tokenizer(models.BPE.from_file(str(model_dir / "vocab.json"), str(model_dir / "merges.txt")))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        added = self.config.get("added_tokens_decoder") or {}
        specials = [AddedToken(v["content"], special=True) for _, v in sorted(added.items(), key=lambda kv: int(kv[0]))
                    if isinstance(v, dict) and "content" in v]
        if specials:
            tokenizer.add_special_tokens(specials)
        return tokenizer

    def encode(self, text: str) -> list[int]:
        if self._tok is not None:
            return list(self._tok.encode(text, add_special_tokens=True).ids)
        ids = list(self._sp.encode(text))
        if self.config.get("add_bos_token", True) and self._sp.bos_id() >= 0:
            ids = [self._sp.bos_id(), *ids]
        return ids

    def decode(self, token_ids: list[int]) -> str:
        if self._tok is not None:
            return self._tok.decode(token_ids, skip_special_tokens=True)
        specials = {self._sp.bos_id(), self._sp.eos_id(), self._sp.unk_id()} - {-1}
        return self._sp.decode([t for t in token_ids if t not in specials])

    def token_id(self, text: str | None) -> int | None:
        if text is None:
            return None
        if self._tok is not None:
            return self._tok.token_to_id(text)
        piece = self._sp.piece_to_id(text)
        return piece if piece != self._sp.unk_id() or text == self._sp.id_to_piece(piece) else None

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str:
        template = self.config.get("chat_template")
        if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        if not template:
            # No template shipped with the model: a plain transcript the model can continue.
            lines = [f"{m['role']}: {m['content']}" for m in messages]
            return "\n".join(lines) + "\nassistant:"
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return env.from_string(template).render(
            messages=messages, add_generation_prompt=True, bos_token=self.bos_token or "",
            eos_token=self.eos_token or "",
        )


def eos_token_ids(model_dir: Path, tokenizer: TextTokenizer) -> tuple[int, ...]:
    """From generation_config.json, else config.json, else the tokenizer's eos token."""
    for name in ("generation_config.json", "config.json"):
        value = _read_json(model_dir / name).get("eos_token_id")
        if isinstance(value, int):
            return (value,)
        if isinstance(value, list) and value:
            return tuple(int(v) for v in value)
    token = tokenizer.token_id(tokenizer.eos_token)
    return (token,) if token is not None else ()
