"""Render MindIE's config.json from the version line's template, the deployment spec and the model directory."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
import yaml

from mindie_pack.config.problems import errors
from mindie_pack.config.releases import release_for
from mindie_pack.config.rules import MS_ON_3
from mindie_pack.config.versions import DEFAULT_MINDIE_VERSION, has_dynamic_timeout_section, line_for
from mindie_pack.errors import PackError
from mindie_pack.resources import template_dir
from mindie_pack.spec import Spec

# What the server section of mindie-pack.yaml may set, with mindie-pack's defaults (run_mindie.sh's where it has
# one). The template's fixed fields are MindIE's shipped defaults.
SERVER_DEFAULTS: dict[str, Any] = {
    "ip_address": "127.0.0.1", "management_ip_address": "127.0.0.2",
    "port": 1025, "management_port": 1026, "metrics_port": 1027,
    "allow_all_zero_ip": False, "max_link_num": 1000,
    "max_seq_len": 2560, "max_input_token_len": 2048, "max_prefill_tokens": 8192,
    "max_batch_size": 200, "max_prefill_batch_size": 50, "max_iter_times": 512, "max_preempt_count": 0,
    "npu_mem_size": 8, "cpu_mem_size": 5, "cache_block_size": 128,
    "token_timeout": 600, "e2e_timeout": 600, "log_level": "Info",
}
TLS_DEFAULTS: dict[str, Any] = {
    "ca_path": "security/ca/", "ca_files": ["ca.pem"], "cert": "security/certs/server.pem",
    "key": "security/keys/server.key.pem", "key_password": "security/pass/key_pwd.txt",
    "crl": "security/certs/server_crl.pem", "crl_files": ["server_crl.pem"],
}
# The shipped conf/config.json of each line differs from ours only in these values (reference §1.4-§1.7).
SHIPPED_MODEL = {"model_name": "llama_65b", "model_weight_path": "/data/atb_testdata/weights/llama1-65b-safetensors",
                 "world_size": 4, "npu_device_ids": [[0, 1, 2, 3]], "backend_type": "atb", "https_enabled": True,
                 "npu_mem_size": -1}


def _strict_json(value: Any) -> str:
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()  # json.dumps would otherwise fail with a vague TypeError
    return json.dumps(value, ensure_ascii=False)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir() / "mindie")),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters["tojson"] = _strict_json
    return env


def render_template(version: str, context: dict[str, Any]) -> dict[str, Any]:
    line = line_for(version)
    full = {"version_string": "1.0.0", "dynamic_timeout_section": has_dynamic_timeout_section(version), **context}
    try:
        text = _environment().get_template(f"config-{line}.json.j2").render(**full)
    except jinja2.UndefinedError as exc:
        raise PackError(f"templates/mindie/config-{line}.json.j2: no value for {exc.message}") from exc
    return json.loads(text)


def default_config(version: str) -> dict[str, Any]:
    """MindIE's own default config.json of a version line (as shipped in mindie-service/conf)."""
    return render_template(version, {**SERVER_DEFAULTS, **SHIPPED_MODEL, "tls": TLS_DEFAULTS})


BACKENDS = ("ms", "atb", "torch")
# build profiles whose model directory a backend other than ms serves (the builder's --profile names)
PROFILE_BACKEND = {"atb": "atb", "torch": "torch"}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _model_dir_facts(model_dir: Path) -> dict[str, Any]:
    yamls = sorted(model_dir.glob("*.yaml")) if model_dir.is_dir() else []
    facts: dict[str, Any] = {}
    manifest = _read_json(model_dir / "manifest.json") if model_dir.is_dir() else {}
    options = manifest.get("options") if isinstance(manifest.get("options"), dict) else {}
    profile = options.get("profile")
    if profile in PROFILE_BACKEND:
        facts["backend"] = PROFILE_BACKEND[profile]
        facts["backend_from"] = f"{model_dir / 'manifest.json'} (profile {profile})"
        if isinstance(options.get("tp"), int):
            facts["world_size"] = options["tp"]
    elif not yamls and (model_dir / "config.json").is_file() and any(model_dir.glob("*.safetensors")):
        facts["plain_hf"] = True  # a Hugging Face folder: served by atb/torch, not by ms
    if len(yamls) == 1:
        doc = yaml.safe_load(yamls[0].read_text()) or {}
        facts["world_size"] = int((doc.get("parallel_config") or {}).get("model_parallel", 1))
        name = (doc.get("trainer") or {}).get("model_name")
        if name:
            facts["model_name"] = str(name)
        seq = ((doc.get("model") or {}).get("model_config") or {}).get("seq_length")
        if isinstance(seq, int):
            facts["seq_length"] = seq
    if "model_name" not in facts and options.get("name"):
        facts["model_name"] = options.get("name")
    return facts


def resolve_backend(version: str, facts: dict[str, Any], backend: str | None) -> tuple[str, str]:
    """(backendType, why): --backend, else the model directory's build profile, else the release's default."""
    release = release_for(version)
    if backend is not None and backend not in BACKENDS:
        raise PackError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    chosen, why = backend, "--backend"
    if chosen is None and facts.get("backend"):
        chosen, why = facts["backend"], str(facts["backend_from"])
    if chosen is None:
        default = "atb" if release.layout == "3.0" or facts.get("plain_hf") else "ms"
        chosen, why = default, f"default for MindIE {release.name}"
    if chosen not in release.backends:
        if chosen == "ms":
            raise PackError(f"backendType \"ms\" ({why}): {MS_ON_3}")
        raise PackError(f"backendType {chosen!r} ({why}): MindIE {release.name} serves "
                        f"{' and '.join(release.backends)} only (torch came with MindIE 3.0.0); pass --backend atb or "
                        "--mindie-version 3.0.0")
    return chosen, why


def build_context(spec: Spec | None, model_dir: Path | None, *, version: str | None = None,
                  backend: str | None = None) -> dict[str, Any]:
    server = dict(spec.section("server")) if spec else {}
    model_section = spec.section("model") if spec else {}
    if model_dir is None and model_section.get("output"):
        model_dir = spec.resolve(model_section["output"]) if spec else None
    if model_dir is None:
        raise PackError("no model directory: pass --model-dir DIR (or set model.output in the spec)")
    model_dir = model_dir.absolute()
    facts = _model_dir_facts(model_dir)
    tp = (spec.section("parallel").get("tp") if spec else None) or facts.get("world_size") or 1
    unknown = sorted(set(server) - set(SERVER_DEFAULTS) - {"mindie_version", "tls", "model_name"})
    if unknown:
        raise PackError(f"spec server.{unknown[0]}: unknown setting (known: {', '.join(sorted(SERVER_DEFAULTS))}, "
                        "tls, mindie_version)")
    context: dict[str, Any] = {**SERVER_DEFAULTS, **{k: v for k, v in server.items() if k in SERVER_DEFAULTS}}
    if "max_prefill_tokens" not in server:
        context["max_prefill_tokens"] = max(context["max_prefill_tokens"], context["max_input_token_len"])
    if "max_prefill_batch_size" not in server:
        context["max_prefill_batch_size"] = min(context["max_prefill_batch_size"], context["max_batch_size"])
    if "max_iter_times" not in server:
        context["max_iter_times"] = min(context["max_iter_times"], context["max_seq_len"])
    tls = server.get("tls")
    backend_type, _ = resolve_backend(version or DEFAULT_MINDIE_VERSION, facts, backend)
    context.update(
        model_name=server.get("model_name") or model_section.get("name") or facts.get("model_name") or model_dir.name,
        model_weight_path=str(model_dir), world_size=int(tp), npu_device_ids=[list(range(int(tp)))],
        backend_type=backend_type, https_enabled=bool(tls), tls={**TLS_DEFAULTS, **(tls or {})},
    )
    return context


def known_keys(layout: str | None, parts: list[str | int]) -> set[str]:
    """The keys the layout's schema knows at a path (list indexes skipped)."""
    if not layout:
        return set()
    from mindie_pack.config.schema import load_schema

    node: Any = load_schema(layout)
    for part in parts:
        while isinstance(node, dict) and node.get("type") == "array" and isinstance(node.get("items"), dict):
            node = node["items"]
        if isinstance(part, int):
            continue
        node = (node or {}).get("properties", {}).get(part) if isinstance(node, dict) else None
    while isinstance(node, dict) and node.get("type") == "array" and isinstance(node.get("items"), dict):
        node = node["items"]
    return set(node.get("properties", {})) if isinstance(node, dict) else set()


def _nearest(node: Any, name: str | int, known: set[str]) -> str:
    import difflib

    candidates = sorted(known | (set(node) if isinstance(node, dict) else set()))
    close = difflib.get_close_matches(str(name), candidates, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def apply_set(config: dict[str, Any], assignment: str, layout: str | None = None) -> None:
    """--set KEY=VALUE: KEY is a dotted JSON path (list indexes as [i]); VALUE is JSON, else a string."""
    if "=" not in assignment:
        raise PackError(f"--set {assignment!r}: expected KEY=VALUE, e.g. ScheduleConfig.maxBatchSize=64")
    key, raw = assignment.split("=", 1)
    if not key.strip():
        raise PackError(f"--set {assignment!r}: the key before '=' is empty; expected KEY=VALUE, e.g. "
                        "ScheduleConfig.maxBatchSize=64")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    parts: list[str | int] = []
    for piece in key.split("."):
        name, _, rest = piece.partition("[")
        if not name:
            raise PackError(f"--set {key}: empty field name in the key path")
        parts.append(name)
        for index in filter(None, rest.replace("]", "").split("[")):
            if not index.isdigit():
                raise PackError(f"--set {key}: [{index}] is not a list index")
            parts.append(int(index))
    if parts and parts[0] in ("ModelDeployConfig", "ScheduleConfig") or parts[:1] == ["ModelConfig"]:
        parts.insert(0, "BackendConfig")  # shorthand for the sections everyone edits
        if parts[1] == "ModelConfig":
            parts.insert(1, "ModelDeployConfig")
    node: Any = config
    for depth, part in enumerate(parts[:-1]):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            raise PackError(f"--set {key}: no such field in the rendered config (at {part!r}"
                            f"{_nearest(node, part, known_keys(layout, parts[:depth]))})") from None
    last = parts[-1]
    if isinstance(node, dict) and isinstance(last, str):
        known = known_keys(layout, parts[:-1]) if layout else set()
        if last not in node and last not in known:
            raise PackError(f"--set {key}: {last!r} is not a field MindIE reads here"
                            f"{_nearest(node, last, known)}")
        node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value
    else:
        raise PackError(f"--set {key}: no such field in the rendered config")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (null deletes a key)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def render_config(spec: Spec | None, *, model_dir: Path | None = None, mindie_version: str | None = None,
                  sets: Sequence[str] = (), patch: dict[str, Any] | None = None,
                  check_model_dir: bool = True, backend: str | None = None) -> dict[str, Any]:
    """Render, apply --set and --patch, validate; raises PackError listing every error."""
    from mindie_pack.config.validate import validate_config

    version = mindie_version or (spec.section("server").get("mindie_version") if spec else None) \
        or DEFAULT_MINDIE_VERSION
    config = render_template(str(version), build_context(spec, model_dir, version=str(version), backend=backend))
    for assignment in sets:
        apply_set(config, assignment, line_for(str(version)))
    if patch is not None:
        config = merge_patch(config, patch)
    problems = errors(validate_config(config, version=str(version), check_model_dir=check_model_dir))
    if problems:
        raise PackError("the rendered config is invalid:\n" + "\n".join(f"  {p}" for p in problems))
    return config
