"""``calib``: the bench command line, one module per command.

Every command runs against the embedded simulated bench unless a bench config
names real instruments, prints a short human summary, and takes ``--json``.
Every error a user can act on (``instruments.errors.UserError`` and the
operating system's refusals) prints as one line; Ctrl-C and SIGTERM end with
the run recorded as interrupted and exit status 130.
"""

from __future__ import annotations

import sys

import click

from calib import __version__
from instruments.errors import UserError


class CalibGroup(click.Group):
    """Turn the toolkit's own errors into one-line messages, not tracebacks."""

    def invoke(self, ctx):
        from calib.jobs.run import signals_interrupt

        try:
            with signals_interrupt():  # SIGTERM at any moment of a command: a clean stop
                return super().invoke(ctx)
        except UserError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from None
        except KeyboardInterrupt as exc:
            click.echo(f"interrupted{f' ({exc})' if str(exc) else ''}", err=True)
            # CPython marks an interrupt that passed through exec() of a string (as some
            # lazy imports do) "unhandled" and would end the process by SIGINT whatever the
            # exit status; a clean exec clears that mark, so the status is 130
            exec("pass", {})  # noqa: S102
            ctx.exit(130)


@click.group(cls=CalibGroup)
@click.version_option(__version__, prog_name="calib")
def main() -> None:
    """Calibrate and train analog in-memory-computing test chips."""


# one registration line per command module
from calib.cli import bench, program, report, sim  # noqa: E402

for module in (sim, program, report, bench):
    main.add_command(module.command)
from calib.cli.map import command as map_command  # noqa: E402

main.add_command(map_command)
from calib.cli.analyze import command as analyze_command  # noqa: E402

main.add_command(analyze_command)
from calib.cli.sweep import command as sweep_command  # noqa: E402

main.add_command(sweep_command)
from calib.cli.infer import command as infer_command  # noqa: E402

main.add_command(infer_command)
from calib.cli.train import command as train_command  # noqa: E402

main.add_command(train_command)
from calib.cli.tempcal import command as tempcal_command  # noqa: E402

main.add_command(tempcal_command)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
