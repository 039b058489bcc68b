"""Cutting a sequence into consecutive groups of bounded size (safetensors shards of `export`, MindSpore
batches of `verify --mindspore`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def consecutive_batches(items: Iterable[T], size: Callable[[T], int], limit: int) -> list[list[T]]:
    """Items in order, a new group whenever the next item would take the group past `limit` (an item larger
    than `limit` gets a group of its own); always at least one group."""
    batches: list[list[T]] = [[]]
    total = 0
    for item in items:
        length = size(item)
        if batches[-1] and total + length > limit:
            batches.append([])
            total = 0
        batches[-1].append(item)
        total += length
    return batches
