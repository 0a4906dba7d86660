"""A site's round: local training from the global weights (FedProx pulls towards them) and scores."""

import pytest
import torch
from helpers import TINY

from bioseg import config
from bioseg.nn.bundle import build_network
from bioseg.workflows.federated_local import Site, local_fit, local_validation


@pytest.fixture(scope="module")
def site(sites, tmp_path_factory):
    cfg = config.from_dict({"data": {"root": "unused"}}, overrides=TINY)
    return Site.open("lab_a", config.to_dict(cfg), sites["lab_a"], tmp_path_factory.mktemp("site"))


def _distance(a, b):
    return sum(float(((a[k].float() - b[k].float()) ** 2).sum()) for k in a if a[k].is_floating_point())


def test_fedprox_keeps_the_local_model_nearer_the_global_one(site):
    torch.manual_seed(0)
    start = build_network(site.cfg).state_dict()
    plain, n, loss = local_fit(site, start, epochs=1, server_round=1)
    pulled, _, _ = local_fit(site, start, epochs=1, server_round=1, proximal_mu=1000.0)
    assert n == 4 and loss > 0
    assert 0 < _distance(pulled, start) < _distance(plain, start)


def test_local_validation_scores_the_given_weights_on_the_site_images(site):
    torch.manual_seed(0)
    scores, n = local_validation(site, build_network(site.cfg).state_dict())
    assert n == 2 and 0 <= scores["dice_mean"] <= 1 and "loss" in scores
