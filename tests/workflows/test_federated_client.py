"""The sites' ClientApp called directly, as a node calls it: it answers the server's query with the
site's profile (metadata only), and clips its update to the norm the server's privacy wrapper sends."""

import pytest
import torch
from helpers import TINY

from bioseg import config
from bioseg.nn.bundle import build_network
from bioseg.workflows.federated_client import Where, client_app, profile_from_record
from bioseg.workflows.federated_sites import site_profile

pytest.importorskip("flwr", reason="the private extra (bioseg[private]) is not installed")


@pytest.fixture(scope="module")
def node(sites, tmp_path_factory):
    """The ClientApp of site lab_a and a function sending it one message, outside any Flower runtime."""
    from flwr.app import Context, Message, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    cfg = config.from_dict({"data": {"root": "unused"}, "model": {"norm": "group"}}, overrides=TINY)
    where = Where(config.to_dict(cfg), "lab_a", sites["lab_a"], tmp_path_factory.mktemp("node"))
    app = client_app(lambda context: where)
    with pytest.MonkeyPatch.context() as patch:  # who is sending: set by a SuperNode's process otherwise
        for key, value in (("_run_id", 1), ("_node_id", 7), ("_task_id", 1)):
            patch.setattr(TaskIdentity, key, value, raising=False)

        def send(kind, **records):
            context = Context(run_id=1, node_id=7, node_config={}, state=RecordDict(), run_config={})
            return app(Message(RecordDict(records), dst_node_id=7, message_type=kind), context)

        yield cfg, send


def test_the_query_answers_the_site_profile_and_no_image(node, sites):
    from flwr.app import ConfigRecord

    cfg, send = node
    reply = send("query", config=ConfigRecord({}))
    assert not reply.has_error() and set(reply.content.keys()) == {"profile"}
    profile, order = profile_from_record(reply.content["profile"])
    assert profile == site_profile(cfg, "lab_a", sites["lab_a"]) and order == 0


def _update_norm(sent, reply):
    new = reply.content["arrays"].to_torch_state_dict()
    return float(torch.sqrt(sum(((new[k].double() - sent[k].double()) ** 2).sum() for k in sent)))


def test_a_site_clips_its_update_when_the_server_sends_a_clipping_norm(node):
    from flwr.app import ArrayRecord, ConfigRecord

    cfg, send = node
    torch.manual_seed(0)
    start = build_network(cfg).state_dict()
    round_1 = {"local-epochs": 1, "server-round": 1}
    free = send("train", arrays=ArrayRecord(torch_state_dict=start), config=ConfigRecord(round_1))
    clipped = send("train", arrays=ArrayRecord(torch_state_dict=start),
                   config=ConfigRecord({**round_1, "clipping_norm": 0.05}))  # fmt: skip
    assert _update_norm(start, free) > 0.1  # what the site would send
    assert _update_norm(start, clipped) == pytest.approx(0.05, rel=1e-4)  # what it sends under privacy
    assert clipped.content["metrics"]["one-site"] == 1 and clipped.content["metrics"]["num-examples"] == 4
