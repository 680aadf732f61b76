"""Local disks of the VM sizes the node pools use, for the ephemeral OS disk decision.

An ephemeral OS disk lives on the VM's local storage: its size limit is the cache, temp or NVMe
disk of the size, or 2,040 GiB, whichever is smaller (source: "Ephemeral OS disks for Azure
VMs", learn.microsoft.com/azure/virtual-machines/ephemeral-os-disks; per-size cache and temp
disk sizes from the series pages learn.microsoft.com/azure/virtual-machines/sizes/
general-purpose/{ddsv5,dsv5,dsv3}-series). AKS places the OS disk on the cache disk when it
fits there, otherwise on the temp disk. A size not in this table is treated as unknown: the
pool keeps a managed OS disk unless ``aks.osDiskType: Ephemeral`` is forced, which is refused.
"""

from __future__ import annotations

from typing import NamedTuple

EPHEMERAL_MAX_GB = 2040


class LocalDisks(NamedTuple):
    cache_gb: int  # 0: no cache disk
    temp_gb: int  # 0: no local temp disk ("s" sizes without "d")


VM_LOCAL_DISKS: dict[str, LocalDisks] = {
    # Ddsv5: local temp disk, no separate cache
    "Standard_D2ds_v5": LocalDisks(0, 75),
    "Standard_D4ds_v5": LocalDisks(0, 150),
    "Standard_D8ds_v5": LocalDisks(0, 300),
    "Standard_D16ds_v5": LocalDisks(0, 600),
    "Standard_D32ds_v5": LocalDisks(0, 1200),
    # Dsv5: no local disk at all
    "Standard_D2s_v5": LocalDisks(0, 0),
    "Standard_D4s_v5": LocalDisks(0, 0),
    "Standard_D8s_v5": LocalDisks(0, 0),
    "Standard_D16s_v5": LocalDisks(0, 0),
    # Dsv3: cache and temp disk
    "Standard_D2s_v3": LocalDisks(50, 16),
    "Standard_D4s_v3": LocalDisks(100, 32),
    "Standard_D8s_v3": LocalDisks(200, 64),
    "Standard_D16s_v3": LocalDisks(400, 128),
}


def ephemeral_capacity_gb(vm_size: str) -> int | None:
    """The largest ephemeral OS disk the size can hold (GiB), or None for an unknown size."""
    disks = VM_LOCAL_DISKS.get(vm_size)
    if disks is None:
        return None
    return min(max(disks.cache_gb, disks.temp_gb), EPHEMERAL_MAX_GB)
