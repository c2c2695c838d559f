"""`adapt`: talk to the service (datasets, jobs, models, keys); other installed distributions add
commands through the `adapt.cli` entry-point group (the server adds `serve` and `worker`)."""
from __future__ import annotations

import sys
from importlib.metadata import EntryPoint, entry_points
from typing import Iterable, Optional

import typer

from adapt.cli import base_models, datasets, exports, jobs, keys, models
from adapt.cli._common import Group, state

ENTRY_POINT_GROUP = "adapt.cli"


def root(url: Optional[str] = typer.Option(None, "--url", envvar="ADAPT_URL",
                                           help="The service (default http://127.0.0.1:8000)."),
         api_key: Optional[str] = typer.Option(None, "--api-key", envvar="ADAPT_API_KEY",
                                               help="An API key (not needed by the embedded "
                                                    "single-user service).")) -> None:
    state.reset(url, api_key)


def _command_name(info: typer.models.CommandInfo) -> str:
    return info.name or info.callback.__name__.lower().replace("_", "-")


def add_plugin_commands(target: typer.Typer, eps: Iterable[EntryPoint] | None = None) -> None:
    """Register the commands of the `adapt.cli` entry points (all installed ones by default).

    An entry point's name is the command's name; its object is either a `typer.Typer` holding a
    command of that name (registered with its own settings) or a plain function. The client
    never imports the server itself: `adapt serve` exists only where adapt-server is installed.
    """
    taken = {_command_name(info) for info in target.registered_commands}
    taken |= {info.name for info in target.registered_groups}
    for ep in entry_points(group=ENTRY_POINT_GROUP) if eps is None else eps:
        if ep.name in taken:
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must not take the client's commands down
            print(f"adapt: skipping command {ep.name!r} ({ep.value}): {exc!r}", file=sys.stderr)
            continue
        if isinstance(obj, typer.Typer):
            found = [i for i in obj.registered_commands if _command_name(i) == ep.name]
            if not found:
                print(f"adapt: skipping command {ep.name!r}: {ep.value} has no command of "
                      "that name", file=sys.stderr)
                continue
            target.registered_commands.extend(found)
        else:
            target.command(name=ep.name)(obj)
        taken.add(ep.name)


def build_app(eps: Iterable[EntryPoint] | None = None) -> typer.Typer:
    """The root command: the client's groups plus the commands of `eps` (default: installed)."""
    cli = typer.Typer(cls=Group, no_args_is_help=True, add_completion=False,
                      help="adapt: fine-tune pretrained models on your data. Exit status: 0 ok, "
                           "1 the API answered with an error (its code and message on stderr), "
                           "2 bad usage, 3 the service could not be reached.")
    cli.callback()(root)
    cli.add_typer(datasets.app, name="datasets")
    cli.add_typer(jobs.app, name="jobs")
    cli.add_typer(models.app, name="models")
    cli.add_typer(exports.app, name="exports")
    cli.add_typer(base_models.app, name="base-models")
    cli.add_typer(keys.app, name="keys")
    add_plugin_commands(cli, eps)
    return cli


app = build_app()


def main() -> None:
    """Console script entry point."""
    app(prog_name="adapt")
