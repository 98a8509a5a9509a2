"""Shared test helpers."""
import pytest
import torch.multiprocessing as mp


def run_ranks(target, *args, world: int = 2, timeout: float = 300) -> None:
    "Run `target(rank, *args)` in `world` spawned processes at once; fail unless every one exits with 0 in `timeout` s."
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=(rank, *args)) for rank in range(world)]
    for p in procs:
        p.start()
    try:
        for rank, p in enumerate(procs):
            p.join(timeout=timeout)
            assert p.exitcode == 0, f"rank {rank} of {world} ended with exit code {p.exitcode}"
    finally:
        for p in procs:                      # a hung rank must not outlive the test
            if p.is_alive():
                p.kill()


@pytest.fixture
def spawn_ranks():
    "The two-process harness of the distributed tests: `spawn_ranks(target, *args, world=2, timeout=300)`."
    return run_ranks
