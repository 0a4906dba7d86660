"""bioseg's federated apps as a Flower App, for a SuperLink and SuperNodes on separate machines.

``server_app`` and ``client_app`` are what Flower loads by name
(``bioseg.workflows.federated_app:server_app``); they are configured only by Flower's own
configuration: the run config (the experiment, the rounds, the strategy, privacy, the server's run
folder: :class:`.federated_server.Plan`) and each SuperNode's ``--node-config`` (``site``, the site's
name, and ``data-dir``, its data folder, known only on that node). :func:`write_app` writes the Flower
App folder (a ``pyproject.toml``) that ``flwr run`` sends to the SuperLink.

The ServerApp's process writes the run folder; a site's mistake (its data, its node config) reaches
the server as one line, and the server refuses sites that disagree before any round.
"""

from __future__ import annotations

import functools
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from bioseg.errors import BiosegError
from bioseg.io.folders import check_output_folder
from bioseg.workflows.federated_client import Where
from bioseg.workflows.federated_client import client_app as make_client_app
from bioseg.workflows.federated_server import Plan, serve

# Flower looks for the components by name in the source; __getattr__ below builds them
__all__ = ["client_app", "server_app", "write_app"]  # noqa: F822
COMPONENTS = {"serverapp": f"{__name__}:server_app", "clientapp": f"{__name__}:client_app"}


def __getattr__(name: str) -> Any:
    """``server_app`` and ``client_app`` are built when Flower asks for them: importing bioseg needs no Flower."""
    if name in ("server_app", "client_app"):
        return _apps()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _apps() -> dict[str, Any]:
    from flwr.serverapp import ServerApp

    server = ServerApp()
    say = logging.getLogger("flwr")  # the ServerApp's log: the SuperLink's output and 'flwr log'

    @server.main()
    def main(grid, context) -> None:
        try:
            result = serve(grid, Plan.from_run_config(context.run_config))
        except BiosegError as err:
            say.error(f"bioseg: error: {err}")
            raise  # the run ends as failed, with this line as its reason
        for line in [*result.summary, f"run folder: {result.run_dir}"]:
            say.info(line)

    return {"server_app": server, "client_app": make_client_app(_deployed_site)}


def _deployed_site(context: Any) -> Where:
    """This SuperNode's site: its name and data folder from ``--node-config``, the rest from the run config."""
    node = context.node_config
    if not str(node.get("site", "")) or not str(node.get("data-dir", "")):
        raise BiosegError("this SuperNode does not say which site it is: start it with "
                          "--node-config 'site=\"NAME\" data-dir=\"/path/to/data\"'")  # fmt: skip
    plan = Plan.from_run_config(context.run_config)
    workdir = Path(tempfile.gettempdir()) / "bioseg-federated"
    return Where(plan.experiment, str(node["site"]), Path(str(node["data-dir"])).expanduser(), workdir)


def write_app(plan: Plan, out_dir: Path) -> Path:
    """Write the Flower App folder for ``plan``: a ``pyproject.toml`` naming bioseg's apps and holding
    the plan as the run config (``flwr run APP_DIR CONNECTION --run-config 'rounds=5'`` overrides a key)."""
    out_dir = check_output_folder(Path(out_dir), "Flower App folder")
    path = out_dir / "pyproject.toml"
    if path.exists():
        raise BiosegError(f"{path} exists; choose another folder (-o) or remove it")
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "# A Flower App: bioseg's federated training (written by 'bioseg federated-app').",
        "# Every machine needs bioseg installed with its private extra; the apps are bioseg's own.",
        "[project]", 'name = "bioseg-federated"', 'version = "1.0.0"',
        'description = "bioseg federated training: each site trains on its own images, only weights travel"',
        'license = "MIT"', 'dependencies = ["flwr>=1.42,<2"]', "",
        "[tool.flwr.app]", 'publisher = "bioseg"', "",
        "[tool.flwr.app.components]", *(f"{k} = {_toml(v)}" for k, v in COMPONENTS.items()), "",
        "[tool.flwr.app.config]", *(f"{k} = {_toml(v)}" for k, v in plan.to_run_config().items()), "",
    ]  # fmt: skip
    path.write_text("\n".join(lines))
    return path


def _toml(value: Any) -> str:
    """A TOML value: JSON's strings and numbers are TOML's; booleans are lower case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)
