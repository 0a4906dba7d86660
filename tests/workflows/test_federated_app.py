"""bioseg's federated apps under a real Flower deployment on the loopback: a SuperLink, one SuperNode
per site (its site and data folder in its --node-config only) and ``flwr run`` on the Flower App that
``bioseg federated-app`` writes. The ServerApp's process writes the run folder; its round-1 model is the
sample-weighted mean of the sites' models, and each site trained exactly as in the simulation run of the
same seed. A site with other channels is refused, in one line, before any round. Every process is
stopped at the end (its whole process group)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from helpers import TINY, run_cli
from safetensors import safe_open
from safetensors.torch import load_file

import bioseg

pytest.importorskip("flwr", reason="the private extra (bioseg[private]) is not installed")
BIN = Path(sys.executable).parent
if not (BIN / "flower-superlink").exists():
    pytest.skip("flower-superlink is not installed beside this Python", allow_module_level=True)


def _sent(path):
    with safe_open(str(path), "pt") as f:
        return load_file(str(path)), int(f.metadata()["num-examples"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def flower(work: Path, sites: dict[str, Path]):
    """A SuperLink and one SuperNode per site on 127.0.0.1, Flower's state and home under ``work``;
    yields ``(environment, superlink log)``."""
    home = work / "flwr_home"
    home.mkdir(parents=True)
    link = _free_port()
    (home / "config.toml").write_text(f'[superlink]\ndefault = "test"\n\n[superlink.test]\n'
                                      f'address = "127.0.0.1:{link}"\ninsecure = true\n')  # fmt: skip
    env = {**os.environ, "FLWR_HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
           "OMP_NUM_THREADS": "1",  # one thread, as each simulated site has: the same sums, the same weights
           "PYTHONPATH": os.pathsep.join([str(Path(bioseg.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    procs, log = [], work / "superlink.log"

    def start(args, out):
        with open(out, "w") as f:  # a session each: stopping it stops the processes Flower starts beneath
            procs.append(subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True))

    try:
        start([BIN / "flower-superlink", "--insecure", "--host", "127.0.0.1", "--port", str(link),
               "--database", work / "state.db", "--disable-runtime-dependency-installation"], log)  # fmt: skip
        for name, root in sites.items():
            start([BIN / "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link}",
                   "--port", str(_free_port()), "--node-config", f'site="{name}" data-dir="{root}"'],
                  work / f"{name}.log")  # fmt: skip
        yield env, log
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _flwr_run(app: Path, env: dict) -> list[str]:
    """``flwr run --stream``: starts the run and prints the ServerApp's log until the run ends."""
    port = int(Path(env["FLWR_HOME"], "config.toml").read_text().split("127.0.0.1:")[1].split('"')[0])
    _wait_for(lambda: _listening(port), "SuperLink", timeout=60)
    done = subprocess.run([BIN / "flwr", "run", app, "test", "--stream"], env=env, capture_output=True, text=True,
                          timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.splitlines()


def _wait_for(check, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.5)
    raise AssertionError(f"no {what} within {timeout} s")


def _app(work: Path, *args) -> Path:
    cfg = work / "exp.yaml"
    cfg.write_text(f"name: fed\noutput_dir: {work / 'runs'}\ndata: {{root: unused}}\n")
    sets = [x for s in TINY for x in ("--set", s)]
    assert run_cli("federated-app", cfg, "-o", work / "app", "--sites", "2", *args, *sets) == 0
    return work / "app"


def _groups_alive(work: Path) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if str(work) in line]


def test_a_deployed_run_writes_the_run_folder_on_the_server(sites, federated_run, tmp_path):
    app = _app(tmp_path, "--rounds", "1", "--keep-updates")
    with flower(tmp_path, sites) as (env, _):
        said = _flwr_run(app, env)
    run_dir = tmp_path / "runs" / "fed" / "fold_0"
    assert any(f"run folder: {run_dir}" in line for line in said)
    assert not _groups_alive(tmp_path)  # nothing left running
    folder = run_dir / "updates" / "round_001"
    (a, n_a), (b, n_b) = _sent(folder / "lab_a.safetensors"), _sent(folder / "lab_b.safetensors")
    assert (n_a, n_b) == (4, 7)
    merged = load_file(str(folder / "global.safetensors"))
    simulated = federated_run / "updates" / "round_001"
    for k in (k for k in merged if merged[k].is_floating_point()):
        expected = (n_a * a[k].double() + n_b * b[k].double()) / (n_a + n_b)
        torch.testing.assert_close(merged[k].double(), expected, rtol=0, atol=1e-6)
    for name, sent in (("lab_a", a), ("lab_b", b)):  # the same seed, the same training as in simulation
        sim = load_file(str(simulated / f"{name}.safetensors"))
        assert all(torch.equal(sent[k], sim[k]) for k in sim)
    assert (run_dir / "model").is_dir() and (run_dir / "config.yaml").is_file()
    about = json.loads((run_dir / "federated.json").read_text())
    assert [s["name"] for s in about["sites"]] == ["lab_a", "lab_b"] and about["rounds"] == 1


def test_a_deployed_site_with_other_channels_is_refused_in_one_line(sites, tmp_path):
    import shutil

    import imageio.v3 as iio
    import numpy as np

    rgb = shutil.copytree(sites["lab_b"], tmp_path / "rgb")
    for path in sorted((rgb / "images").iterdir()):  # the same images, as colour
        iio.imwrite(path, np.stack([iio.imread(path)] * 3, axis=-1))
    app = _app(tmp_path, "--rounds", "1")
    with flower(tmp_path, {"lab_a": sites["lab_a"], "rgb": rgb}) as (env, _):
        said = [line for line in _flwr_run(app, env) if "bioseg: error:" in line]
    assert len(said) == 1
    assert "site 'rgb'" in said[0] and "3 channel(s), site 'lab_a' with 1" in said[0]
    assert not (tmp_path / "runs").exists()  # refused before any round


def test_the_app_folder_is_a_valid_flower_app_naming_bioseg_apps(tmp_path):
    import tomllib

    from flwr.cli.config_utils import load_and_validate

    from bioseg.workflows.federated_server import Plan

    app = _app(tmp_path, "--rounds", "4", "--dp-noise-multiplier", "1.0", "--dp-clipping-norm", "0.2")
    loaded, _ = load_and_validate(app / "pyproject.toml")  # Flower's own check, the components imported
    flwr = tomllib.loads((app / "pyproject.toml").read_text())["tool"]["flwr"]["app"]
    assert flwr["components"] == {"serverapp": "bioseg.workflows.federated_app:server_app",
                                  "clientapp": "bioseg.workflows.federated_app:client_app"}  # fmt: skip
    plan = Plan.from_run_config(flwr["config"])
    assert (plan.rounds, plan.sites, plan.dp.noise_multiplier, plan.dp.clipping_norm) == (4, 2, 1.0, 0.2)
    assert plan.run_dir == str(tmp_path / "runs" / "fed" / "fold_0")
    assert run_cli("federated-app", tmp_path / "exp.yaml", "-o", app, "--sites", "2", "--rounds", "1") == 2  # exists
