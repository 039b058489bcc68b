"""frozen_heap (the build's collector setting): cyclic garbage made inside is still collected, the freeze
is undone afterwards, and garbage that existed before is freed rather than frozen."""

from __future__ import annotations

import gc
import weakref

from mindie_pack.heap import frozen_heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_frozen_heap_keeps_collecting_new_garbage_and_undoes_the_freeze() -> None:
    before = _Node()
    old = weakref.ref(before)
    del before
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        assert old() is None  # freed, not frozen for the rest of the process
        assert gc.get_freeze_count() > 0
        inside = _Node()
        new = weakref.ref(inside)
        del inside
        gc.collect()
        assert new() is None
    assert gc.get_freeze_count() == 0
