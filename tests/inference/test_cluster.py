"""Where dask runs: threads in this process by default, a LocalCluster on 127.0.0.1 without a dashboard,
or a running cluster; memory sizes; contradictory choices refused."""

import dask
import pytest

from bioseg.errors import BiosegError
from bioseg.inference.cluster import parse_memory, scheduler


def test_default_is_one_block_at_a_time_in_threads():
    with scheduler() as where:
        assert where == {"compute": {"scheduler": "threads", "num_workers": 1}, "parallel": 1}


def test_local_cluster_listens_on_localhost_without_dashboard():
    with scheduler(workers=1, memory_limit=parse_memory("1GB")) as where:
        client = where["compute"]["scheduler"]
        info = client.scheduler_info()
        assert where["parallel"] == 1 and len(info["workers"]) == 1
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        # no dashboard routes; the scheduler's small HTTP server (health checks) listens on 127.0.0.1 only
        http = client.cluster.scheduler.http_server
        assert {s.getsockname()[0] for s in http._sockets.values()} == {"127.0.0.1"}
        rules = client.cluster.scheduler.http_application.wildcard_router.rules
        assert not any("bokeh" in str(r) or "status" in str(r) for r in rules)
        (worker,) = info["workers"].values()
        assert worker["memory_limit"] == 10**9
        assert dask.compute(dask.delayed(sum)([1, 2]), scheduler=client) == (3,)
        # the same cluster reached by its address, as --scheduler does
        with scheduler(address=client.scheduler.address) as remote:
            assert remote["parallel"] == 1


def test_bad_choices_are_one_line():
    with pytest.raises(BiosegError, match="not both"):
        with scheduler(workers=2, address="tcp://127.0.0.1:1"):
            pass
    with pytest.raises(BiosegError, match="at least 1"):
        with scheduler(workers=0):
            pass
    with pytest.raises(BiosegError, match="not a size"):
        parse_memory("lots")
    assert parse_memory("512MiB") == 512 * 2**20
