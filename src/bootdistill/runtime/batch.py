"""How a step's `train.batch_tokens` splits into sequences, processes and micro-batches: the one place every
caller (trainer, SALT_DS selection, crossing evaluation, the experiment planner) reads it from. No torch."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class BatchPlan:
    micro: int  # sequences per forward, on one process
    accum: int  # forwards per step (gradient accumulation), on one process
    world: int  # processes
    context: int

    @property
    def sequences(self) -> int:
        """Sequences per step, all processes together."""
        return self.micro * self.accum * self.world

    @property
    def tokens(self) -> int:
        """Tokens per step, all processes together: what the ledger counts."""
        return self.sequences * self.context


def batch_plan(batch_tokens: int, context: int, micro_batch: int, world: int = 1) -> BatchPlan:
    """The step's round(batch_tokens / context) sequences split evenly over `world` processes; each process runs
    its share as micro-batches of the largest divisor of that share that is <= micro_batch."""
    seqs = max(1, round(batch_tokens / context))
    if seqs % world:
        raise ConfigError(f"a step of {seqs} sequences (train.batch_tokens / model.context) does not split over "
                          f"{world} processes: use a multiple of {world} sequences or another process count")
    per_rank = seqs // world
    micro = max(d for d in range(1, min(micro_batch, per_rank) + 1) if per_rank % d == 0)
    return BatchPlan(micro, per_rank // micro, world, context)
