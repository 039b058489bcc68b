"""Which HF `model_type`s MindIE's atb backend serves, per release (a data table with its sources).

How atb picks the model (MindIE-LLM examples/atb_models/atb_llm/models/__init__.py, 8b4871ad):
- `model_type` from config.json, lower-cased (:54-57);
- renamed by `router_model_type`'s table (:137-150, same table at 40fb0630);
- accepted only when `atb_llm/models/<name>/` is a folder other than `base` and not starting with `_` (:84-98),
  else NotImplementedError "unsupported model type: <name>…".

The folder lists below are `git ls-tree --name-only <commit> examples/atb_models/atb_llm/models/` minus
`__init__.py` and `base`. With an installation visible, the installed `atb_llm/models` folders decide instead
(`installed_model_types`).
"""

from __future__ import annotations

from pathlib import Path

# router_model_type: models/__init__.py:137-150 @8b4871ad (identical @40fb0630).
MODEL_TYPE_ALIASES: dict[str, str] = {
    "kclgpt": "codeshell", "internvl_chat": "internvl", "llava_next_video": "llava_next",
    "bunny-qwen2": "bunny", "bunny-minicpm": "bunny", "deepseek_v2": "deepseekv2", "deepseek_v3": "deepseekv2",
    "vita-qwen2": "vita", "qwen2_5_vl": "qwen2_vl", "ernie4_5_moe": "ernie_moe",
}

_COMMON = (
    "baichuan", "bloom", "chatglm", "deepseek", "deepseekv2", "embedding", "ernie_moe", "glm41v", "glm4_moe", "glm4v",
    "gte_qwen", "hunyuan", "internlm2", "internlm3", "internlmxcomposer2", "internvl", "janus", "kimi_k2", "llama",
    "llava", "llava_next", "minicpm", "minicpm_qwen2_v2", "mistral", "mixtral", "mllama", "phi3", "qwen2",
    "qwen2_audio", "qwen2_moe", "qwen2_vl", "qwen3", "qwen3_moe", "telechat", "vita", "yivl",
)
# release -> (commit, model folders)
SHIPPED_LISTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "2.3.0": ("40fb0630", _COMMON),
    "3.0.0": ("8b4871ad", tuple(sorted((*_COMMON, "qwen3_vl", "qwen3_vl_moe")))),
}
DEFAULT_RELEASE = "3.0.0"


def atb_name(model_type: str) -> str:
    """The atb_llm folder a config.json model_type routes to."""
    lowered = model_type.lower()
    return MODEL_TYPE_ALIASES.get(lowered, lowered)


def shipped_release(mindie_version: str | None) -> str:
    """The release whose shipped list applies: 3.x -> 3.0.0, anything earlier -> 2.3.0 (the oldest list we hold)."""
    if mindie_version and mindie_version.split(".")[0].isdigit() and int(mindie_version.split(".")[0]) < 3:
        return "2.3.0"
    return DEFAULT_RELEASE


def installed_model_types(atb_llm_dir: Path) -> tuple[str, ...]:
    """The folders of an installed atb_llm/models (the same rule as models/__init__.py:84-92)."""
    models = atb_llm_dir / "models"
    if not models.is_dir():
        return ()
    return tuple(sorted(p.name for p in models.iterdir() if p.is_dir() and p.name != "base"
                        and not p.name.startswith("_")))


def visible_atb_llm() -> Path | None:
    """An installed atb_llm this machine shows without being told: $ATB_SPEED_HOME_PATH/atb_llm (exported by
    atb-models/set_env.sh), the current interpreter's atb_llm (a 3.0 pip install), /usr/local/Ascend/atb-models."""
    import importlib.util
    import os

    candidates = []
    if os.environ.get("ATB_SPEED_HOME_PATH"):
        candidates.append(Path(os.environ["ATB_SPEED_HOME_PATH"]) / "atb_llm")
    try:
        spec = importlib.util.find_spec("atb_llm")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent)
    candidates.append(Path("/usr/local/Ascend/atb-models/atb_llm"))
    return next((c for c in candidates if (c / "models").is_dir()), None)


def check_model_type(model_type: str | None, supported: tuple[str, ...]) -> bool:
    return model_type is not None and atb_name(model_type) in supported
