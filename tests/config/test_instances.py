"""post.instances in the config: the heads it needs, and options its mode does not read."""


import pytest

from bioseg import config
from bioseg.errors import BiosegError


def test_config_refuses_instances_without_a_boundary_head():
    with pytest.raises(BiosegError, match="needs a head with target boundary"):
        config.from_dict({"data": {"root": "/d"}, "post": {"instances": {"mode": "boundary"}}})
    with pytest.raises(BiosegError, match="needs type: binary"):
        config.from_dict({"data": {"root": "/d"}, "heads": {"b": {"type": "multiclass", "target": "boundary"}}})


def test_config_refuses_boundary_options_in_foreground_mode():
    heads = {"foreground": {"type": "binary", "target": "foreground"}, "b": {"type": "binary", "target": "boundary"}}

    def experiment(**instances):
        return config.from_dict({"data": {"root": "/d"}, "heads": heads, "post": {"instances": instances}})

    with pytest.raises(BiosegError, match="merge_threshold is not read in mode foreground") as err:
        experiment(mode="foreground", merge_threshold=0.3)
    assert "\n" not in str(err.value)
    with pytest.raises(BiosegError, match="agglomeration, beta are not read in mode foreground"):
        experiment(mode="foreground", agglomeration="multicut", beta=0.3)
    with pytest.raises(BiosegError, match="foreground_method is not read in mode boundary"):
        experiment(mode="boundary", foreground_method="components")
    with pytest.raises(BiosegError, match="max_size .* is below min_size"):
        experiment(mode="foreground", min_size=50, max_size=10)
    inst = experiment(mode="foreground", threshold=0.4, seed_method="min_distance", max_size=900).post.instances
    assert (inst.foreground_head, inst.boundary_head) == ("foreground", None)  # no boundary head resolved
    # a config that bioseg wrote holds every key, the boundary ones at their defaults: it loads again
    assert config.from_dict(config.to_dict(experiment(mode="foreground"))).post.instances.mode == "foreground"
    assert config.from_dict(config.to_dict(experiment()), overrides=["post.instances.mode=foreground"])
