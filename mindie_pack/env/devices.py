"""NPU id lists (`--devices 0,1,2,3`): parsed and bounded once, for env, ranktable and deploy."""

from __future__ import annotations

from collections.abc import Sequence

from mindie_pack.errors import PackError


def parse_devices(text: str, flag: str = "--devices") -> list[int]:
    """Comma-separated, non-negative, distinct NPU ids; anything else is refused naming the flag."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise PackError(f"{flag} {text!r}: expected comma-separated NPU ids, e.g. 0,1,2,3 (an id is empty)")
    ids = []
    for part in parts:
        if not part.isdigit():
            raise PackError(f"{flag} {text!r}: {part!r} is not an NPU id (expected a number >= 0, e.g. 0,1,2,3)")
        ids.append(int(part))
    repeated = sorted({d for d in ids if ids.count(d) > 1})
    if repeated:
        raise PackError(f"{flag} {text!r}: NPU {', '.join(map(str, repeated))} is listed more than once (each rank "
                        "needs its own NPU)")
    return ids


def check_devices(devices: Sequence[int], *, world_size: int | None = None, available: Sequence[int] | None = None,
                  flag: str = "--devices") -> None:
    """Enough NPUs for worldSize, and only NPUs this host has (when the host can tell: npu-smi)."""
    shown = ",".join(map(str, devices))
    if world_size is not None and len(devices) < world_size:
        raise PackError(f"{flag} {shown}: {len(devices)} NPU(s) for worldSize {world_size} (the model directory "
                        f"was built with --tp {world_size}); give {world_size} ids")
    if available is not None:
        missing = [d for d in devices if d not in set(available)]
        if missing:
            have = ",".join(map(str, sorted(available))) or "none"
            raise PackError(f"{flag} {shown}: this host has no NPU {', '.join(map(str, missing))} (npu-smi lists "
                            f"{have})")


def host_npu_ids(npu_smi: str | None) -> list[int] | None:
    """The NPU ids npu-smi lists, or None when there is no npu-smi to ask."""
    if npu_smi is None:
        return None
    from mindie_pack.env.npu import query_npus

    try:
        return [chip.npu for chip in query_npus(npu_smi).chips]
    except PackError:
        return None  # doctor's npu-smi check reports this
