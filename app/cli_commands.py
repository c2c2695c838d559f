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
def worker() -> None:
    """Run one training worker (it shares the database, broker and data directory)."""
    from app.serve import main as serve_main  # deferred: uvicorn, alembic, the app: only to run

    serve_main(["--worker-only"])
