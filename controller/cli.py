"""The ``chamberd`` command line: the root that assembles each package's commands.

Each package owns its commands, next to the code they call: the site's in
:mod:`chamberd.controller.commands`, the network's in :mod:`chamberd.network_sync.commands`,
the calibration's in :mod:`chamberd.calibration.commands`.
This module only assembles them, and is the one place where errors become messages and
exit codes (0 ok, 1 unexpected chamberd error, 2 bad configuration or usage, 3 a data file
or observation refused).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from chamberd.controller.errors import ChamberError

__all__ = ["cli", "main"]


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("chamberd")
    except Exception:  # pragma: no cover - only when run from a bare checkout
        return "0+unknown"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="chamberd")
def cli() -> None:
    """chamberd: automated soil-respiration chambers, flux fitting and network sync."""


def _assemble() -> None:
    from chamberd.calibration import commands as calibration_commands
    from chamberd.controller import commands as site_commands
    from chamberd.network_sync import commands as network_commands

    for module in (site_commands, network_commands, calibration_commands):
        for command in module.COMMANDS:
            cli.add_command(command)


_assemble()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chamberd`` console script."""
    try:
        cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except ChamberError as exc:
        click.echo(f"chamberd: error: {exc}", err=True)
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code or 0)
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
