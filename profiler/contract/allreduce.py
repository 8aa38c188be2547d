"""What one ring all-reduce moves: the one formula writers and readers share (torch-free)."""
from __future__ import annotations

__all__ = ["ring_allreduce_bytes"]


def ring_allreduce_bytes(payload_bytes: int, processes: int) -> int:
    """Bytes each of `processes` ranks sends (and receives) in a ring all-reduce of `payload_bytes`:
    2·P·(N−1)/N (reduce-scatter, then all-gather), rounded down; 0 for a single process."""
    return 2 * payload_bytes * (processes - 1) // processes if processes > 1 else 0
