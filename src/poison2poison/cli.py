"""The `p2p` command line: thin wrappers that parse, load a config and call the library.

stdout carries results only (`predict`: strict JSON lines); logs and progress go to stderr, and an error is one line
there, printed as it is (no markup is read into it, and it is never wrapped).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from .config import load_config
from .data.readers import SUPPORTED, Fields
from .errors import ConfigError, P2PError, one_line
from .summary import clean_metric, defense_label, fine_tune_seconds_text

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Fine-tune on possibly poisoned data; defend with P2P.")
console = Console(stderr=True)
results = Console(markup=False, soft_wrap=True)
"""stdout: tables and result lines, with no markup read into the names and paths they show."""

DATA_HELP = f"Your labelled data: a {SUPPORTED} file, or hub:ID[:SPLIT] (network needed)."
TEXT_FIELD_HELP = "The field (column) that holds the text; default: sentence, else text."
LABEL_FIELD_HELP = "The field (column) that holds the label: integers, or names such as 'positive'."
FORCE_HELP = "Overwrite the run files in --out when they belong to another run."


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
    for column in ("run", "defense", "clean", "ASR", "train s"):
        table.add_column(column, justify="left" if column in ("run", "defense") else "right")
    for name, m in rows:
        metric, value = clean_metric(m)
        table.add_row(
            name, defense_label(m), f"{metric} {value:.3f} (n={m['clean_count']})",
            f"{m['attack_success_rate']:.3f} (n={m['asr_count']})", fine_tune_seconds_text([m]),
        )
    return table


@app.command()
def run(
    config: Path = typer.Argument(..., help="Experiment YAML."),
    out: Path = typer.Option(..., "--out", help="Run directory (resumed if it holds this run, unfinished)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override, e.g. --set attack.rate=0.05"),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Attack -> defense -> fine-tune -> evaluate; writes RUN_DIR/metrics.json and the rest of the run."""
    from .pipeline import run_experiment

    metrics = run_experiment(load_config(config, set_ or []), out, force)
    if metrics:
        results.print(metrics_table([(str(out), metrics)]))


@app.command()
def defend(
    data: str = typer.Option(..., "--data", help=DATA_HELP),
    model: str = typer.Option(..., "--model", help="Hub id, local path, 'minilm' or 'tiny'."),
    out: Path = typer.Option(..., "--out", help="Folder for the defended model and its manifest."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with defense/train/model settings."),
    task: Optional[str] = typer.Option(None, "--task", help="Named task (sentiment, topic); default: the data's labels."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override, e.g. --set defense.rho=0.3"),
    text_field: Optional[str] = typer.Option(None, "--text-field", help=TEXT_FIELD_HELP),
    label_field: str = typer.Option("label", "--label-field", help=LABEL_FIELD_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Apply robust P2P (`p2p+`) with a secret trigger to your own data and save a defended model; `p2p predict`
    applies the trigger."""
    from .api import DEFAULT_DEFENSE, LEFT_OUT
    from .api import defend as defend_data

    overrides = [*([] if config else [DEFAULT_DEFENSE]), *(set_ or [])]
    folder = defend_data(data, model, out, load_config(config, overrides), task, force, Fields(text_field, label_field))
    print(f"defended model: {folder}  (p2p.json holds the benign trigger: keep it private)")
    left_out = folder / LEFT_OUT
    if left_out.is_file():
        count = len(left_out.read_text(encoding="utf-8").splitlines())
        print(f"{count} rows of {data} were left out of training as suspicious: {left_out} lists them and why")


@app.command()
def scan(
    data: str = typer.Option(..., "--data", help=DATA_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the rows that carry a confirmed trigger (.jsonl)."),
    min_count: int = typer.Option(5, "--min-count", min=2, help="n-grams in fewer rows are not tested."),
    text_field: Optional[str] = typer.Option(None, "--text-field", help=TEXT_FIELD_HELP),
    label_field: str = typer.Option("label", "--label-field", help=LABEL_FIELD_HELP),
) -> None:
    """Look for planted word or sentence triggers in labelled data, without training (trigger confirmation, as
    `p2p+` leaves them out). Syntactic and style triggers have no n-gram and are not found this way."""
    from .data.catalog import read_user_data
    from .defenses.lexical import confirmed_triggers
    from .io import atomic_write_jsonl

    labelled = read_user_data(data, Fields(text_field, label_field))
    rows, names = labelled.examples, labelled.label_names
    finding = confirmed_triggers([e.text for e in rows], [e.label for e in rows], min_count)
    found = Table(title="confirmed triggers")
    for column in ("n-gram", "label", "rows"):
        found.add_column(column, justify="left" if column == "n-gram" else "right")
    for gram, label in sorted(finding.triggers.items()):
        found.add_row(gram, names[label] if names else str(label), str(len(finding.carriers[gram])))
    results.print(found)
    print(f"{len(finding.rows)} of {len(rows)} rows carry a confirmed trigger ({data})")
    if out is not None:
        carried = finding.triggers_by_row
        atomic_write_jsonl(out, ({"row": i + 1, "text": rows[i].text, "label": names[rows[i].label] if names else
                                  rows[i].label, "triggers": carried[i]} for i in finding.rows))
        print(f"flagged rows: {out}")


@app.command()
def predict(
    directory: Path = typer.Argument(..., help="A folder written by `p2p defend` or `p2p run`."),
    input_: Optional[Path] = typer.Option(
        None, "--input", help=".txt (a text per line), or .jsonl, .csv or .parquet with a text field."
    ),
    text: Optional[List[str]] = typer.Option(None, "--text", help="A text to classify (repeatable)."),
    text_field: Optional[str] = typer.Option(None, "--text-field", help=TEXT_FIELD_HELP),
) -> None:
    """Answer in the original label space (one JSON line per text on stdout, with the label's id and name); the
    defense's trigger and projection are applied automatically."""
    import json

    from .api import DefendedModel
    from .data.readers import read_texts

    texts = list(text or []) + (read_texts(input_, text_field) if input_ else [])
    if not texts:
        raise ConfigError("predict: give --input FILE or at least one --text")
    model = DefendedModel.load(directory)
    for t, label_id in zip(texts, model.predict_ids(texts)):
        print(json.dumps({"text": t, "label": label_id, "label_name": model.label_names[label_id]}, ensure_ascii=False))


@app.command()
def serve(
    directory: Path = typer.Argument(..., help="A folder written by `p2p defend` or `p2p run` (classifier or generator)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; beyond loopback, API keys are required."),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    api_key_file: Optional[Path] = typer.Option(None, "--api-key-file", help="API keys, one a line (also: P2P_API_KEYS)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Processes, each with its own copy of the model."),
    insecure: bool = typer.Option(False, "--insecure", help="Allow a non-loopback address without API keys."),
    no_detect: bool = typer.Option(False, "--no-detect", help="Refuse requests with `detect` (see docs/serving.md)."),
    max_body_bytes: int = typer.Option(1_000_000, "--max-body-bytes", min=1024),
    max_inputs: int = typer.Option(64, "--max-inputs", min=1, help="Texts per request."),
    max_input_chars: int = typer.Option(8192, "--max-input-chars", min=1, help="Characters per text or message."),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, help="Seconds a request may wait for its answer (then 504)."),
    max_batch_size: int = typer.Option(32, "--max-batch-size", min=1, help="Inputs per model call."),
    batch_wait_ms: float = typer.Option(5.0, "--batch-wait-ms", min=0, help="How long a batch waits to fill."),
) -> None:
    """Serve a defended model over HTTP: the trigger, cue and projection (or safe prefix) are applied server-side.
    POST /v1/classify, /v1/completions, /v1/chat/completions; GET /v1/models, /healthz, /metrics."""
    from .serve import ServeSettings, run_server

    run_server(ServeSettings(
        model_dir=directory, host=host, port=port, workers=workers, api_key_file=api_key_file, insecure=insecure,
        allow_detect=not no_detect, max_body_bytes=max_body_bytes, max_inputs=max_inputs,
        max_input_chars=max_input_chars, timeout_s=timeout, max_batch_size=max_batch_size, batch_wait_ms=batch_wait_ms,
    ))


@app.command()
def table(
    runs: List[Path] = typer.Argument(..., help="Run folders, or folders that contain them (searched for metrics.json)."),
) -> None:
    """A Markdown table of finished runs, grouped by run name, mean +- std over seeds."""
    from .summary import collect_metrics, markdown_table

    print(markdown_table(collect_metrics(runs)))


@app.command()
def bench(
    grid: Path = typer.Argument(..., help="Grid YAML: base config, seeds, and named datasets/attacks/defenses/models."),
    out: Path = typer.Option(..., "--out", help="Grid folder: cells/ holds one run per cell; results.csv/json sum up."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Run only shard I of N (I/N, 1-based), e.g. 2/4."),
    collect: bool = typer.Option(False, "--collect", help="Run nothing: write the results of the finished cells."),
) -> None:
    """Run every unfinished cell of a grid (restart to resume); a failing cell is recorded and the grid goes on."""
    from .bench import load_grid, parse_shard, run_grid

    cells = load_grid(grid)
    counts = run_grid(cells, out, parse_shard(shard) if shard else None, collect_only=collect)
    print(
        f"{counts['selected']} cells in this {'shard' if shard else 'grid'}: {counts['done']} already finished, "
        f"{counts['ran']} ran, {counts['failed']} failed. Whole grid: {counts['finished']}/{len(cells)} finished. "
        f"Results: {out / 'results.csv'}"
    )
    if counts["failed"]:
        raise typer.Exit(1)


@app.command()
def report(
    directory: Path = typer.Argument(..., help="A grid folder written by `p2p bench` (reads its results.json)."),
    title: str = typer.Option("poison2poison benchmark", "--title", help="Heading of the report."),
) -> None:
    """report.md and a self-contained report.html with figures (CA vs ASR, ASR per attack, rho sweep, cost)."""
    from .report import build_report

    paths = build_report(directory, title)
    print(f"report: {paths['markdown']}  {paths['html']}  figures: {paths['figures']}")


QUICKSTART = (("clean-floor", ["attack.rate=0"]), ("no-defense", []), ("p2p+", ["defense.name=p2p+"]))
"""The quickstart's rows: (run name, overrides of configs/quickstart.yaml)."""


@app.command()
def quickstart(
    out: Path = typer.Option(Path("runs/quickstart"), "--out", help="Where the runs go (finished runs are reused)."),
    model: str = typer.Option("minilm", "--model", help="Model for every run."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override for every run."),
) -> None:
    """SST-2 poisoned with BadNets: the clean floor, no defense and p2p+ side by side, on real data, with a verdict
    (about 4 minutes on 2 CPU cores)."""
    from importlib.resources import files

    from .pipeline import run_experiment
    from .summary import goal_verdict

    path = Path(str(files("poison2poison").joinpath("configs", "quickstart.yaml")))
    rows = []
    for name, overrides in QUICKSTART:
        config = load_config(path, [*overrides, f"model.name={model}", *(set_ or [])])
        console.rule(name)
        rows.append((name, run_experiment(config, out / name)))
    results.print(metrics_table(rows))
    results.print(goal_verdict(*(metrics for _, metrics in rows)))


def print_error(exc: P2PError) -> None:
    """One line on stderr, printed as it is: no markup is read into it (a label or a path may hold `[/x]`), and it
    is not wrapped (stderr may be a file, where rich would wrap at 80 columns)."""
    console.print(Text.assemble(("error: ", "red"), one_line(str(exc))), soft_wrap=True)


def main() -> None:
    try:
        app()
    except P2PError as exc:
        print_error(exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
