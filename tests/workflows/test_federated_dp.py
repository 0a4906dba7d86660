"""Site-level differential privacy with Flower's wrappers: every site's update is clipped to the norm C
and the server averages the clipped updates, each site counting once (noise 0 here, so the average is
checked exactly); with noise the epsilon per round is Opacus's Rényi accountant of the Gaussian
mechanism composed over the rounds, and a target epsilon stops the run before the round that would
pass it."""

import json
import math

import pytest
import torch
from helpers import TINY, run_cli
from safetensors.torch import load_file

from bioseg.errors import BiosegError
from bioseg.reports.history import read_metrics_csv
from bioseg.workflows.federated_dp import SiteDP

pytest.importorskip("opacus", reason="the private extra (bioseg[private]) is not installed")


def _opacus_epsilons(noise: float, rounds: int, delta: float) -> list[float]:
    from opacus.accountants import RDPAccountant

    accountant, out = RDPAccountant(), []
    for _ in range(rounds):  # one release of the Gaussian mechanism per round, every site sampled
        accountant.step(noise_multiplier=noise, sample_rate=1.0)
        out.append(accountant.get_epsilon(delta))
    return out


def test_the_epsilon_of_the_rounds_is_opacus_accountant_and_the_target_bounds_them():
    dp = SiteDP(1.3, 0.5, delta=1e-4)
    assert [dp.epsilon(r) for r in (1, 2, 3)] == pytest.approx(_opacus_epsilons(1.3, 3, 1e-4), rel=1e-12)
    within = SiteDP(1.3, 0.5, 1e-4, target_epsilon=(dp.epsilon(2) + dp.epsilon(3)) / 2)
    assert within.rounds_within(5) == 2 and within.rounds_within(1) == 1
    with pytest.raises(BiosegError, match="one round already spends epsilon"):
        SiteDP(1.3, 0.5, 1e-4, target_epsilon=dp.epsilon(1) / 2).rounds_within(3)
    with pytest.raises(BiosegError, match="needs noise"):
        SiteDP(0.0, 0.5, target_epsilon=3.0)
    assert SiteDP(0.0, 0.5).epsilon(1) == math.inf


def _federated(sites, work, *args):
    cfg = work / "exp.yaml"
    cfg.write_text(f"name: dp\noutput_dir: {work / 'runs'}\ndata: {{root: unused}}\n")
    sets = [x for s in TINY for x in ("--set", s)]
    where = [f"--site={n}={root}" for n, root in sites.items()]
    assert run_cli("federated", cfg, *where, "--keep-updates", *args, *sets) == 0
    return work / "runs" / "dp" / "fold_0"


def test_sites_clip_their_updates_and_the_server_averages_them_once_each(sites, tmp_path):
    pytest.importorskip("ray", reason="the private extra (bioseg[private]) is not installed")
    clip = 0.05
    run = _federated(sites, tmp_path, "--rounds", "1", "--dp-noise-multiplier", "0", "--dp-clipping-norm", str(clip))
    start = load_file(str(run / "updates" / "round_000" / "global.safetensors"))
    folder = run / "updates" / "round_001"
    sent = [load_file(str(folder / f"{name}.safetensors")) for name in ("lab_a", "lab_b")]
    for state in sent:  # each site's update (its weights minus the global ones) is clipped to C
        norm = torch.sqrt(sum(((state[k].double() - start[k].double()) ** 2).sum() for k in start))
        assert float(norm) == pytest.approx(clip, rel=1e-5)
    merged = load_file(str(folder / "global.safetensors"))
    for k in start:  # the unweighted mean (4 and 7 training images count the same), no noise
        expected = start[k].double() + sum(s[k].double() - start[k].double() for s in sent) / 2
        torch.testing.assert_close(merged[k].double(), expected, rtol=0, atol=1e-6)
    about = json.loads((run / "federated.json").read_text())
    assert about["weighting"] == "one per site (site-level privacy)" and about["privacy"]["epsilon"] is None
    assert "BatchNorm" not in (run / "config.yaml").read_text() and "norm: group" in (run / "config.yaml").read_text()


def test_the_spent_epsilon_is_recorded_per_round_and_a_target_stops_the_run(sites, tmp_path, capsys):
    pytest.importorskip("ray", reason="the private extra (bioseg[private]) is not installed")
    noise, delta = 1.3, 1e-4
    eps = _opacus_epsilons(noise, 3, delta)
    target = (eps[1] + eps[2]) / 2  # two rounds fit, the third would pass it
    run = _federated(sites, tmp_path, "--rounds", "3", "--dp-noise-multiplier", str(noise), "--dp-clipping-norm",
                     "0.5", "--dp-delta", str(delta), "--dp-target-epsilon", str(target))  # fmt: skip
    rows = read_metrics_csv(run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1.0, 2.0]
    assert [r["privacy/epsilon"] for r in rows] == pytest.approx(eps[:2], rel=1e-9)
    out = capsys.readouterr().out
    assert f"stopped after round 2 of 3: round 3 would spend epsilon {eps[2]:.3f}" in out
    privacy = json.loads((run / "federated.json").read_text())["privacy"]
    assert privacy["epsilon"] == pytest.approx(eps[1]) and privacy["stopped_at_target"] and privacy["delta"] == delta
    assert (run / "charts" / "privacy.png").is_file()
    assert not (run / "updates" / "round_003").exists()
