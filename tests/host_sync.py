"""Count what would make a GPU step wait for the host: on CPU there is nothing to wait for, so a count of the
operations that force a device-to-host read is how the tests check "no host sync in a step".

`HostSyncCounter` is a `TorchDispatchMode` that counts calls of the aten operators whose result size or value
must be read on the host: `.item()` / `bool()` / `int()` (`_local_scalar_dense`), boolean-mask selection and
`nonzero` (the output size depends on the data), and the like. On CUDA each of them is a stream sync."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

SYNCING_OPS = {
    "aten::_local_scalar_dense",
    "aten::nonzero",
    "aten::masked_select",
    "aten::unique_dim",
    "aten::_unique2",
    "aten::is_nonzero",
}


class HostSyncCounter(TorchDispatchMode):
    """`with HostSyncCounter() as syncs: ...` then `syncs.total` and `syncs.by_op` (op name -> calls).

    `host_resident`: tensors that live on the host on every device (e.g. the step counts of a non-capturable
    Adam, which `torch.optim` keeps on the CPU on purpose); reading those is not a device sync."""

    def __init__(self, host_resident: Iterable[Tensor] = ()) -> None:
        super().__init__()
        self.by_op: Counter[str] = Counter()
        self.host_resident = {id(t) for t in host_resident}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        if args and id(args[0]) in self.host_resident:
            pass
        elif name in SYNCING_OPS or (name == "aten::index" and _has_bool_index(args)):
            self.by_op[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.by_op.values())


def _has_bool_index(args: tuple) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, Tensor) and i.dtype == torch.bool for i in indices or ())
