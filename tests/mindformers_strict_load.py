"""Run as a script: build the MindFormers network from the yaml in MODEL_DIR and load every rank strictly.

Executed in a subprocess by test_build_mindformers.py (MindFormers writes ./output/ logs and sets global
MindSpore state, so it must not run inside the pytest process). Prints one JSON object.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mindspore as ms
import numpy as np

ms.set_context(mode=ms.PYNATIVE_MODE)
ms.set_device("CPU")

from mindformers import MindFormerConfig  # noqa: E402
from mindformers.models.llama import LlamaConfig, LlamaForCausalLM  # noqa: E402

KV_CACHE_MARKER = "paged_attention_mgr"  # key/value cache buffers: allocated by MindIE, never in a checkpoint


def main(model_dir: Path) -> dict[str, object]:
    (yaml_path,) = list(model_dir.glob("*.yaml"))
    config = MindFormerConfig(str(yaml_path))  # as MindIE's ModelRunner reads it
    tp = int(config.parallel_config.model_parallel)
    model_config = {k: v for k, v in config.model.model_config.items() if k != "type"}
    net = LlamaForCausalLM(LlamaConfig(**model_config))
    declared = {p.name: p for p in net.get_parameters() if KV_CACHE_MARKER not in p.name}
    ranks = [ms.load_checkpoint(str(model_dir / "weights" / f"rank_{r}" / f"checkpoint_{r}.ckpt")) for r in range(tp)]
    problems: list[str] = []
    for rank, params in enumerate(ranks):
        if set(params) != set(declared):
            problems.append(f"rank {rank}: missing {sorted(set(declared) - set(params))}, "
                            f"unused {sorted(set(params) - set(declared))}")
            continue
        for name, param in declared.items():
            ours = params[name]
            if ours.dtype != param.dtype:
                problems.append(f"rank {rank}: {name} is {ours.dtype}, the network declares {param.dtype}")
            differing = [d for d, (a, b) in enumerate(zip(ours.shape, param.shape, strict=True)) if a != b]
            if len(differing) > 1 or (differing and param.shape[differing[0]] != ours.shape[differing[0]] * tp):
                problems.append(f"rank {rank}: {name} has shape {list(ours.shape)}, network {list(param.shape)}, "
                                f"tp {tp}")
    if problems:
        return {"tp": tp, "problems": problems}

    # Put the shards back together along the one axis each was divided on, then load strictly.
    merged: dict[str, ms.Parameter] = {}
    for name, param in declared.items():
        parts = [r[name] for r in ranks]
        axis = next((d for d, (a, b) in enumerate(zip(parts[0].shape, param.shape, strict=True)) if a != b), None)
        if axis is None:
            merged[name] = ms.Parameter(parts[0], name=name)
        else:
            arrays = [p.astype(ms.float32).asnumpy() for p in parts]
            merged[name] = ms.Parameter(ms.Tensor(np.concatenate(arrays, axis=axis)).astype(parts[0].dtype), name=name)
    not_loaded, unused = ms.load_param_into_net(net, merged, strict_load=True)
    not_loaded = [n for n in not_loaded if KV_CACHE_MARKER not in n]
    return {"tp": tp, "problems": [], "not_loaded": not_loaded, "unused": list(unused),
            "parameters": len(declared)}


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(Path(sys.argv[1]))))
