"""`adapt serve` and `adapt worker`: the server's commands in the client's `adapt` CLI.

The client (adapt-client) finds them through the `adapt.cli` entry-point group, which the root
pyproject.toml registers; each entry point names this `commands` app and the command's name.
app.serve is imported only when a command runs, so `adapt --help` stays fast.
"""
import typer

commands = typer.Typer()


@commands.command("serve", add_help_option=False,
                  context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def serve(ctx: typer.Context) -> None:
    """Run the service as adapt-serve does, with its options (adapt serve --help)."""
    from app.serve import main as serve_main  # deferred: uvicorn, alembic, the app: only to run

    serve_main(list(ctx.args))


@commands.command("worker")
def worker(gpus: str = typer.Option(None, "--gpus", metavar="all|N",
                                    help="One worker process per GPU (all, or the first N), "
                                         "each pinned to its GPU and taking GPU jobs; one CPU "
                                         "worker when no GPU is visible (ADAPT_WORKER_GPUS).")
           ) -> None:
    """Run a training worker (it needs only the database, broker and storage URLs)."""
    from app.serve import main as serve_main  # deferred: uvicorn, alembic, the app: only to run

    serve_main(["--worker-only", *(["--gpus", gpus] if gpus is not None else [])])
