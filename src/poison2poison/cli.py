"""The `p2p` command line: thin wrappers that parse, load a config and call the library."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from .config import load_config
from .errors import P2PError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Fine-tune on possibly poisoned data; defend with P2P.")
console = Console(stderr=True)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)], force=True
    )
    logging.getLogger("poison2poison").setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("transformers", "datasets", "accelerate", "peft"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    _setup_logging(verbose)


def metrics_table(rows: list[tuple[str, dict]]) -> Table:
    table = Table(title="results")
    for column in ("run", "defense", "CA", "ASR", "train s"):
        table.add_column(column, justify="left" if column in ("run", "defense") else "right")
    for name, m in rows:
        defense = m["defense"] + (f" ({m['defense_source']})" if m.get("defense_source") else "")
        table.add_row(
            name, defense, f"{m['clean_accuracy']:.3f} (n={m['clean_count']})",
            f"{m['attack_success_rate']:.3f} (n={m['asr_count']})", f"{m['train_seconds']:.0f}",
        )
    return table


@app.command()
def run(
    config: Path = typer.Argument(..., help="Experiment YAML."),
    out: Path = typer.Option(..., "--out", help="Run directory (resumed if it exists)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override, e.g. --set attack.rate=0.05"),
) -> None:
    """Attack -> defense -> fine-tune -> evaluate; writes RUN_DIR/metrics.json and the rest of the run."""
    from .pipeline import run_experiment

    metrics = run_experiment(load_config(config, set_ or []), out)
    if metrics:
        Console().print(metrics_table([(str(out), metrics)]))


def main() -> None:
    try:
        app()
    except P2PError as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
