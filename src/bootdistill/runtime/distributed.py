"""Process-group plumbing for data-parallel training on torch.distributed (launched by torchrun).

One process per device. Without torchrun's environment (WORLD_SIZE unset) every function here is a no-op
for a world of one, so single-process runs take exactly the code path they always did.

- ddp:  the model is replicated; DistributedDataParallel averages gradients.
- fsdp: parameters, gradients and optimizer state are sharded with FSDP2 (`fully_shard`), one unit per block.

torch's DDP, FSDP and distributed-checkpoint modules are imported where used: together 2.2 s that a
single-process run does not pay.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from ..arch import build_model
from ..errors import ConfigError

MODES = ("auto", "none", "ddp", "fsdp")


def launched() -> bool:
    """True when torchrun (or another launcher) set up a multi-process environment."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init() -> None:
    """Join torchrun's process group once per process (idempotent); ranks > 0 print nothing to stdout."""
    if not launched() or dist.is_initialized():
        return
    backend = "gloo"
    if torch.cuda.is_available():  # GPU tensors over NCCL; logged scalars and objects stay on CPU, over gloo
        backend = "cpu:gloo,cuda:nccl"
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group(backend, timeout=timedelta(minutes=30))
    atexit.register(cleanup)
    if dist.get_rank() > 0:
        sys.stdout = open(os.devnull, "w")  # logs and progress come from rank 0 only; errors still reach stderr


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def finish() -> None:
    """On success: wait for every rank, then leave the group. A rank that tears gloo down while another is still
    talking to it can abort at exit ("terminate called without an active exception")."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world() > 1:
        dist.barrier()


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. preparing data files), the others after it, quietly, reusing its result."""
    if is_main():
        yield
        barrier()
        return
    barrier()
    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):  # rank 0 already said it
        yield


def resolve_mode(parallel: str) -> str:
    """train.parallel -> none | ddp | fsdp, checked against how the process was launched."""
    if parallel not in MODES:
        raise ConfigError(f"train.parallel must be one of {', '.join(MODES)}, got '{parallel}'")
    if parallel == "auto":
        return "ddp" if launched() else "none"
    if parallel != "none" and not launched():
        raise ConfigError(f"train.parallel={parallel} needs torchrun: torchrun --nproc_per_node=N -m bootdistill train ...")
    if parallel == "none" and launched() and int(os.environ["WORLD_SIZE"]) > 1:
        raise ConfigError(f"launched on {os.environ['WORLD_SIZE']} processes but train.parallel=none: "
                          "use train.parallel=ddp or fsdp, or run without torchrun")
    return parallel


def local_device(device: torch.device) -> torch.device:
    """Each process drives its own GPU (LOCAL_RANK); CPU processes share the CPU."""
    if device.type == "cuda" and launched() and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def seed_rank(seed: int) -> None:
    """Give ranks > 0 their own dropout stream, seeded from (seed, rank); rank 0 keeps the single-process one."""
    if rank() > 0:
        torch.manual_seed(int(np.random.SeedSequence([seed, rank()]).generate_state(1)[0]))


def wrap(model: torch.nn.Module, mode: str, device: torch.device) -> torch.nn.Module:
    """The module to call in training: the model itself, DDP around it, or the model sharded in place (FSDP2)."""
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if mode == "fsdp":
        shard(model)
    return model


def shard(model: torch.nn.Module) -> None:
    """FSDP2: one unit per transformer block, the rest (embeddings, tied head, final norm) in the root unit."""
    from torch.distributed.fsdp import fully_shard

    for block in model.blocks:
        fully_shard(block)
    fully_shard(model)


def grad_sync(wrapped: torch.nn.Module, last_micro_step: bool):
    """Skip the gradient all-reduce / reduce-scatter on all but the last micro-step of an optimizer step."""
    if hasattr(wrapped, "no_sync") and not last_micro_step:
        return wrapped.no_sync()  # DDP
    if hasattr(wrapped, "set_requires_gradient_sync"):
        wrapped.set_requires_gradient_sync(last_micro_step)  # FSDP2
    return contextlib.nullcontext()


def mean(values: list[float]) -> list[float]:
    """The mean of each value over all ranks (logged losses); unchanged in a world of one."""
    if world() == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return (t / world()).tolist()


def sum_(t: torch.Tensor) -> torch.Tensor:
    """A CPU tensor summed over all ranks."""
    if world() > 1:
        dist.all_reduce(t)
    return t


def gather(obj) -> list:
    """Every rank's `obj`, in rank order, on every rank."""
    if world() == 1:
        return [obj]
    out = [None] * world()
    dist.all_gather_object(out, obj)
    return out


# ---------------------------------------------------------------- FSDP checkpoints (torch.distributed.checkpoint)


def _sharded_state(model: torch.nn.Module, optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optimizer": optim_state}


def save_sharded(path, model: torch.nn.Module, optimizer) -> None:
    """Every rank writes its shards of the model and optimizer state into `path`."""
    import torch.distributed.checkpoint as dcp

    dcp.save(_sharded_state(model, optimizer), checkpoint_id=str(path))


def load_sharded(path, model: torch.nn.Module, optimizer) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    state = _sharded_state(model, optimizer)
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def full_model(model: torch.nn.Module) -> torch.nn.Module | None:
    """A sharded model gathered into a plain one on rank 0's CPU (None elsewhere); every rank takes part."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not is_main():
        return None
    with torch.random.fork_rng(devices=[]):  # its throwaway init must not shift rank 0's dropout stream
        plain = build_model(model.shape)
    plain.load_state_dict(full)
    return plain
