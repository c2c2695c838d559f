"""`adapt`: run the service, or talk to one (datasets, jobs, models, keys)."""
from __future__ import annotations

from typing import Optional

import typer

from adapt.cli import datasets, jobs, keys, models
from adapt.cli._common import Group, state

app = typer.Typer(cls=Group, no_args_is_help=True, add_completion=False,
                  help="adapt: fine-tune pretrained models on your data. Exit status: 0 ok, "
                       "1 the API answered with an error (its code and message on stderr), "
                       "2 bad usage, 3 the service could not be reached.")
app.add_typer(datasets.app, name="datasets")
app.add_typer(jobs.app, name="jobs")
app.add_typer(models.app, name="models")
app.add_typer(keys.app, name="keys")


@app.callback()
def root(url: Optional[str] = typer.Option(None, "--url", envvar="ADAPT_URL",
                                           help="The service (default http://127.0.0.1:8000)."),
         api_key: Optional[str] = typer.Option(None, "--api-key", envvar="ADAPT_API_KEY",
                                               help="An API key (not needed by the embedded "
                                                    "single-user service).")) -> None:
    state.reset(url, api_key)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             add_help_option=False)
def serve(ctx: typer.Context) -> None:
    """Run the service as adapt-serve does, with its options (adapt serve --help)."""
    from app.serve import main as serve_main

    serve_main(list(ctx.args))


@app.command()
def worker() -> None:
    """Run one training worker (it shares the database, broker and data directory)."""
    from app.serve import main as serve_main

    serve_main(["--worker-only"])


def main() -> None:
    """Console script entry point."""
    app(prog_name="adapt")

