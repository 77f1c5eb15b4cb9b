"""`borderwatch`: the operators' command line (embedded cluster, migrations, data, keys, serving).

One module per group of commands (server, data, keys, cooperation, backup); every command calls
the service functions the API calls, and those record the audit events."""

from __future__ import annotations

from app.cli import backup, cooperation, data, keys, posts, reports, server, units
from app.cli.common import group

app = group("Borderwatch operator commands.", no_args_is_help=True)
app.add_typer(server.db_app, name="db")
app.add_typer(data.geodata_app, name="geodata")
app.add_typer(data.demo_app, name="demo")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(cooperation.cooperation_app, name="cooperation")
app.add_typer(reports.report_app, name="report")
app.add_typer(units.units_app, name="units")
app.add_typer(posts.posts_app, name="posts")
app.command("migrate")(server.migrate_cmd)
app.command("import")(data.import_cmd)
app.command("serve")(server.serve)
app.command("backup")(backup.backup)
app.command("restore")(backup.restore)


def main() -> None:
    """Console-script entry point."""
    app()
