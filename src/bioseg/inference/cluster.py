"""Where dask runs block-wise prediction: in this process (dask's threaded scheduler), on a
``distributed.LocalCluster`` of worker processes, or on an existing dask.distributed cluster.

Nothing here opens a port to the outside: the local cluster listens on 127.0.0.1 and has no dashboard.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from bioseg.errors import BiosegError


def require_dask(distributed: bool = False) -> None:
    try:
        import dask.array  # noqa: F401

        if distributed:
            import distributed as _  # noqa: F401
    except ImportError:
        raise BiosegError(
            "block-wise prediction needs the distributed extra, which is not installed: "
            "pip install 'bioseg[distributed]'"
        ) from None


def parse_memory(text: str | int | None) -> int | None:
    """``"2GB"``, ``"512 MiB"`` or a number of bytes → bytes; None → None."""
    if text is None or isinstance(text, int):
        return text
    from dask.utils import parse_bytes

    try:
        value = int(parse_bytes(text))
    except (ValueError, TypeError):
        value = 0
    if value <= 0:
        raise BiosegError(f"memory limit '{text}' is not a size; write e.g. 2GB or 512MiB")
    return value


@contextlib.contextmanager
def scheduler(
    workers: int | None = None, address: str | None = None, memory_limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """The keyword arguments of ``dask.compute`` for the chosen place, and how many blocks run at once:
    ``{"compute": {...}, "parallel": n}``. ``address``: a running scheduler (``tcp://host:8786``);
    ``workers``: a LocalCluster of that many single-threaded processes sharing ``memory_limit``; neither:
    dask's threaded scheduler in this process, one block at a time (the network already uses every core)."""
    if workers is not None and address is not None:
        raise BiosegError("give --workers (a local cluster) or --scheduler (a running one), not both")
    if workers is not None and workers < 1:
        raise BiosegError(f"--workers {workers}: give at least 1 worker process")
    if workers is None and address is None:
        require_dask()
        yield {"compute": {"scheduler": "threads", "num_workers": 1}, "parallel": 1}
        return
    require_dask(distributed=True)
    from distributed import Client, LocalCluster

    if address is not None:
        try:
            client = Client(address, timeout="20s")
        except OSError as err:
            raise BiosegError(f"no dask scheduler answered at {address} ({err}): start one (dask scheduler)") from None
        with client:
            yield {"compute": {"scheduler": client}, "parallel": max(1, len(client.scheduler_info()["workers"]))}
        return
    per_worker = "auto" if memory_limit is None else max(1, memory_limit // workers)
    import dask

    # dashboard_address=None: no dashboard; the scheduler's health-check server binds to host, 127.0.0.1.
    # Blocks are sized to the limit and hold no results, so workers neither spill nor pause: a worker
    # above the limit is restarted and its block done again.
    quiet = {"distributed.worker.memory.target": False, "distributed.worker.memory.spill": False,
             "distributed.worker.memory.pause": False}  # fmt: skip
    with (
        dask.config.set(quiet),
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                     dashboard_address=None, memory_limit=per_worker) as cluster,  # fmt: skip
        Client(cluster) as client,
    ):
        yield {"compute": {"scheduler": client}, "parallel": workers}
