"""The ``farm`` command's entry point: every subcommand, with ``--help`` on each."""

import typer

from api.cli import keys, operator, predictions, usage

app = typer.Typer(
    name="farm",
    help="The SD3.5 Medium render farm from a terminal. Client commands use FARM_URL and FARM_API_KEY "
    "(or --url and --api-key); operator commands use the FARM_* settings of the farm itself.",
    no_args_is_help=True,
    add_completion=False,
)

app.command(rich_help_panel="Client")(predictions.predict)
app.command(rich_help_panel="Client")(predictions.get)
app.command(rich_help_panel="Client")(predictions.cancel)
app.command(rich_help_panel="Client")(usage.usage)
app.command(rich_help_panel="Operator")(operator.up)
app.command(rich_help_panel="Operator")(operator.worker)
app.command(rich_help_panel="Operator")(operator.migrate)
app.add_typer(keys.app, name="keys", rich_help_panel="Operator")

if __name__ == "__main__":
    app()
