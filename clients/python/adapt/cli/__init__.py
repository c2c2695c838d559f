"""The `adapt` command line: a client of the service's API (plus commands other distributions
register in the `adapt.cli` entry-point group, e.g. the server's `serve` and `worker`)."""
import sys

# typer and rich come with the `cli` extra only (the SDK itself needs httpx and pydantic), so a
# plain `pip install adapt-client` still installs the `adapt` script: say what is missing instead
# of a traceback. Only a missing CLI dependency is caught; any other ImportError propagates.
_CLI_DEPS = {"typer", "rich", "click", "shellingham"}

try:
    from adapt.cli.main import app, main
except ModuleNotFoundError as exc:
    if (exc.name or "").partition(".")[0] not in _CLI_DEPS:
        raise
    _missing = exc.name

    def main() -> None:
        """Console script entry point without the `cli` extra: explain, exit 1."""
        sys.exit(f"adapt: the command line needs {_missing}, which is not installed: "
                 "install adapt-client[cli] (pip install 'adapt-client[cli]')")

__all__ = ["app", "main"]
