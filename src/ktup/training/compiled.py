"""``train.compile``: the model's two losses through ``torch.compile`` (inductor).

On the CPU the per-step cost of ktup is mostly the overhead of many small tensor operations
(gathers, projections onto K hyperplanes, the straight-through Gumbel choice, their backward);
inductor fuses them into a few generated C++ loops. Measured on ml1m-dbpedia, 1 thread: a ktup
step 12-13 ms → 8 ms of CPU (docs/SCALING.md §7). The first steps pay the compilation (about
7-15 s of CPU, once per batch shape: the last, shorter batch of an epoch compiles once more).

The compiled losses compute the same function; only the random stream of the Gumbel noise
differs from eager mode (inductor draws its own), so a compiled run is reproducible with its seed
and resumes exactly, but is not bit-identical to an eager run with the same seed.
"""

from __future__ import annotations

from ktup.errors import ConfigError


class CompiledLosses:
    """Stands in for the model in ``joint_loss``: ``rec_loss`` and ``kg_loss`` compiled."""

    def __init__(self, model):
        import torch

        if not hasattr(torch, "compile"):
            raise ConfigError("train.compile: this torch has no torch.compile (needs torch >= 2.0)")
        self.model = model
        self.rec_loss = torch.compile(model.rec_loss, dynamic=False)
        self.kg_loss = torch.compile(model.kg_loss, dynamic=False)


def check_compile(cfg, sparse: bool, distributed: bool) -> None:
    """One-line refusal of the combinations compile does not support."""
    if not cfg.compile:
        return
    if sparse:
        raise ConfigError("train.compile does not work with sparse row updates (train.sparse, or "
                          "train.sparse_auto_rows reached): set train.compile=false or train.sparse_auto_rows=0")
    if distributed:
        raise ConfigError("train.compile is not supported with several processes (train.nproc > 1)")


def compile_failure(exc: BaseException) -> "ConfigError | None":
    """The one-line error for inductor failing to build its code (e.g. no C++ compiler on the
    machine); None when ``exc`` is not a compilation failure."""
    from torch._dynamo.exc import BackendCompilerFailed

    if not (isinstance(exc, BackendCompilerFailed) or type(exc).__module__.startswith("torch._inductor")):
        return None
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return ConfigError(f"train.compile: torch.compile failed ({type(exc).__name__}: {first}); it needs a "
                       "working C++ compiler (gcc/g++) on the CPU; set train.compile=false to train without it")
