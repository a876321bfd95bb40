"""``iolab report``: a saved run (any older iolab.run version) as text, Markdown, JSON or an HTML page."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import click

from iolab.analysis.knowledge import NONE, ScenarioKnowledge
from iolab.outputs import OutputKeeper, check_outputs
from iolab.report import markdown, terminal
from iolab.results import RunResult

_FORMAT_BY_SUFFIX = {".md": "md", ".markdown": "md", ".json": "json", ".html": "html", ".htm": "html"}


@dataclass(frozen=True)
class ReportOptions:
    results_file: Path
    fmt: str | None = None  # text | md | json | html; None = from the output's suffix, else text
    output: Path | None = None  # None or '-' = stdout


@click.command("report")
@click.argument("results_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "md", "json", "html"]), default=None,
              help="Output format (default: from -o's extension, else text).")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write here instead of stdout ('-' = stdout).")
def report_command(results_file: Path, fmt: str | None, output: Path | None) -> None:
    """Render a saved run (any older iolab.run version) as text, Markdown, JSON or an HTML page.

    \b
    Examples:
      iolab report iolab-results/20260101-120000.json
      iolab report results.json -o results.md
      iolab report results.json -o report.html
    """
    report_from_cli(ReportOptions(results_file, fmt, output))


def _knowledge(result: RunResult) -> ScenarioKnowledge:
    """The demo's knowledge of its scenarios for a demo run (its findings answer the seed), else none."""
    from iolab.demo.scenarios import knowledge

    return ScenarioKnowledge(**knowledge()) if result.target.get("kind") == "demo" else NONE


def report_from_cli(opts: ReportOptions) -> None:
    from iolab import results
    from iolab.analysis.findings import with_findings

    output = opts.output
    check_outputs(("-o", output), stdout=("-o",))
    result = results.load(opts.results_file)
    result = with_findings(result, _knowledge(result))  # regenerated: an older file has none
    fmt = opts.fmt
    if fmt is None:
        suffix = output.suffix.lower() if output is not None and str(output) != "-" else ""
        fmt = _FORMAT_BY_SUFFIX.get(suffix, "text")
    if fmt == "html":
        from iolab.report import html

        text = html.render(result)
    elif fmt == "md":
        text = markdown.render(result)
    elif fmt == "json":
        text = results.dumps(result)
    else:
        text = terminal.render(result, width=160)
    if output is None or str(output) == "-":
        sys.stdout.write(text)
    else:
        keeper = OutputKeeper()
        keeper.write("-o", output, text)
        keeper.raise_if_fell_back()
