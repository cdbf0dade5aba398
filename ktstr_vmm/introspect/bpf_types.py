"""BPF map types by the uapi's names (`enum bpf_map_type`, a stable ABI): the one table the
map reader (bpf_maps.py, which prefers the kernel's own BTF enum when it has one) and the
failure-dump text (rundir/dumptext.py, reading a recorded dump without a kernel) share."""

from __future__ import annotations

MAP_TYPES: dict[int, str] = {
    1: "HASH", 2: "ARRAY", 3: "PROG_ARRAY", 4: "PERF_EVENT_ARRAY", 5: "PERCPU_HASH",
    6: "PERCPU_ARRAY", 7: "STACK_TRACE", 9: "LRU_HASH", 10: "LRU_PERCPU_HASH",
    12: "ARRAY_OF_MAPS", 13: "HASH_OF_MAPS", 22: "QUEUE", 23: "STACK", 26: "STRUCT_OPS",
    27: "RINGBUF", 29: "TASK_STORAGE", 33: "ARENA",
}
_BY_NAME = {name: value for value, name in MAP_TYPES.items()}
HASH, ARRAY = _BY_NAME["HASH"], _BY_NAME["ARRAY"]
PERCPU_HASH, PERCPU_ARRAY = _BY_NAME["PERCPU_HASH"], _BY_NAME["PERCPU_ARRAY"]
LRU_HASH, LRU_PERCPU_HASH = _BY_NAME["LRU_HASH"], _BY_NAME["LRU_PERCPU_HASH"]
