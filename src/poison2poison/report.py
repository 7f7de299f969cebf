"""The benchmark report: Markdown and a self-contained HTML page with figures, from a grid's results.json.

Every figure that shows ASR draws the clean floor (the same attack's trigger on a model trained without poison),
since an ASR means little without it. Tables give mean ± std over the seeds that finished.
"""

from __future__ import annotations

import base64
import html
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .bench import CLEAN, RESULTS_JSON  # noqa: E402
from .errors import ConfigError  # noqa: E402
from .io import atomic_write_text, read_json  # noqa: E402
from .summary import format_mean_std, markdown_rows  # noqa: E402

BASELINE = "none"  # the defense variant of the undefended model every cost is a ratio to (whatever its grid label)
TIME_FIELDS = ("train_seconds", "screen_seconds", "defense_seconds")  # what a defense costs at fine-tune time


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float
    n: int

    def text(self, digits: int = 3) -> str:
        return format_mean_std(self.mean, self.std, self.n, digits)


def stat(values: Iterable[float]) -> Stat | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return Stat(statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))


Group = tuple[str, str, str, str]  # dataset, attack, model, defense


def group_rows(rows: list[dict[str, Any]]) -> dict[Group, list[dict[str, Any]]]:
    """Finished cells grouped over seeds, in the order the grid lists them."""
    groups: dict[Group, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["status"] == "ok":
            groups[(row["dataset"], row["attack"], row["model"], row["defense"])].append(row)
    return dict(groups)


def fine_tune_seconds(row: dict[str, Any]) -> float:
    return sum(row.get(name) or 0.0 for name in TIME_FIELDS)


def cost_ratios(rows: list[dict[str, Any]], per_setting: bool = False) -> dict[Any, dict[str, Stat | None]]:
    """Fine-tune time and inference latency as ratios to no defense on the same data, model and seed.

    Keyed by defense, or with `per_setting` by (dataset, attack, model, defense). A fine-tune resumed from a
    checkpoint (on either side) timed only its last part, so it gives no fine-tune ratio.
    """
    undefended = {
        (r["dataset"], r["attack"], r["model"], r["seed"]): r
        for r in rows
        if r["status"] == "ok" and r["defense"] != CLEAN and r.get("defense_variant") == BASELINE
    }
    ratios: dict[Any, dict[str, list[float]]] = defaultdict(lambda: {"fine_tune": [], "inference": []})
    for row in rows:
        base = undefended.get((row["dataset"], row["attack"], row["model"], row["seed"]))
        if row["status"] != "ok" or base is None or row["defense"] == CLEAN:
            continue
        key = _group(row) if per_setting else row["defense"]
        if not (row.get("resumed_from_step") or base.get("resumed_from_step")):
            ratios[key]["fine_tune"].append(fine_tune_seconds(row) / fine_tune_seconds(base))
        if row.get("inference_ms_per_1k") and base.get("inference_ms_per_1k"):
            ratios[key]["inference"].append(row["inference_ms_per_1k"] / base["inference_ms_per_1k"])
    return {key: {k: stat(v) for k, v in parts.items()} for key, parts in ratios.items()}


def _cell(value: Stat | None, digits: int = 3) -> str:
    return value.text(digits) if value else "–"


def results_tables(rows: list[dict[str, Any]]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, columns, rows) per dataset x model: every attack x defense with its clean floor beside it. A setting
    whose every seed failed still gets its row, with its failures counted."""
    groups = group_rows(rows)
    costs = cost_ratios(rows, per_setting=True)
    failures = Counter(_group(r) for r in rows if r["status"] == "failed")
    by_setting: dict[tuple[str, str], list[Group]] = defaultdict(list)
    for key in dict.fromkeys(_group(r) for r in rows if r["status"] in ("ok", "failed")):
        by_setting[(key[0], key[2])].append(key)
    tables = []
    for (dataset, model), keys in by_setting.items():
        metric = next((groups[k][0]["clean_metric"] for k in keys if k in groups), "clean metric")
        columns = ["attack", "defense", "seeds", metric, "ASR", "ASR − floor", "fine-tune ×", "inference ×", "failed"]
        body = []
        for key in keys:
            runs = groups.get(key, [])
            floor = groups.get((dataset, key[1], model, CLEAN), [])
            asr = stat(r["attack_success_rate"] for r in runs)
            above = asr_above_floor(runs, floor) if key[3] != CLEAN else None
            failed = failures[key]
            cost = costs.get(key, {})
            body.append([
                key[1], key[3], ", ".join(str(r["seed"]) for r in runs), _cell(stat(r["clean_score"] for r in runs)),
                _cell(asr), f"{above:+.3f}" if above is not None else "–",
                _cell(cost.get("fine_tune"), 2), _cell(cost.get("inference"), 2), str(failed) if failed else "",
            ])
        tables.append((f"{dataset} · {model}", columns, body))
    return tables


def asr_above_floor(runs: list[dict[str, Any]], floor: list[dict[str, Any]]) -> float | None:
    """Mean of ASR minus the clean floor's ASR, paired by seed; against the floor's mean for seeds it lacks."""
    if not runs or not floor:
        return None
    by_seed = {r["seed"]: r["attack_success_rate"] for r in floor}
    mean_floor = statistics.mean(by_seed.values())
    return statistics.mean(r["attack_success_rate"] - by_seed.get(r["seed"], mean_floor) for r in runs)


DETECTION_COLUMNS = ["attack", "defense", "detects", "precision", "recall", "CA (accepted)", "ASR (accepted)"]


def detection_tables(rows: list[dict[str, Any]]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per dataset x model, the defenses that detect: training-time filters (poisoned rows left out) and
    inference-time detectors (triggered inputs rejected, with CA and ASR over the accepted inputs alone)."""
    by_setting: dict[tuple[str, str], list[list[str]]] = defaultdict(list)
    for key, runs in group_rows(rows).items():
        if all(r.get("detection_recall") is None for r in runs):
            continue
        rejects = any(r.get("triggered_rejected") is not None for r in runs)
        by_setting[(key[0], key[2])].append([
            key[1], key[3], "triggered inputs" if rejects else "poisoned training rows",
            _cell(stat(r.get("detection_precision") for r in runs)), _cell(stat(r.get("detection_recall") for r in runs)),
            _cell(stat(r.get("clean_accuracy_accepted") for r in runs)),
            _cell(stat(r.get("attack_success_rate_accepted") for r in runs)),
        ])
    return [(f"Detection · {dataset} · {model}", DETECTION_COLUMNS, body) for (dataset, model), body in by_setting.items()]


def _group(row: dict[str, Any]) -> Group:
    return row["dataset"], row["attack"], row["model"], row["defense"]


# Figures --------------------------------------------------------------------------------------------------------


def _defense_colors(defenses: list[str]) -> dict[str, Any]:
    """A colour of its own per defense: tab10 while it lasts, then tab20's paler shades (up to 20 apart)."""
    if len(defenses) <= 10:
        return {name: plt.get_cmap("tab10")(i) for i, name in enumerate(defenses)}
    palette = plt.get_cmap("tab20")
    shades = [palette(2 * i) for i in range(10)] + [palette(2 * i + 1) for i in range(10)]
    return {name: shades[i % 20] for i, name in enumerate(defenses)}


def _defenses(groups: dict[Group, list[dict[str, Any]]]) -> list[str]:
    return list(dict.fromkeys(key[3] for key in groups if key[3] != CLEAN))


def figure_ca_vs_asr(rows: list[dict[str, Any]]) -> plt.Figure | None:
    """One panel per dataset x model x attack: each defense at (ASR, clean metric), the clean floor's ASR dashed."""
    groups = group_rows(rows)
    panels = list(dict.fromkeys((k[0], k[2], k[1]) for k in groups))
    if not panels:
        return None
    colors = _defense_colors(_defenses(groups))
    cols = min(4, len(panels))
    fig, axes = plt.subplots(-(-len(panels) // cols), cols, figsize=(3.6 * cols, 3.3 * -(-len(panels) // cols)),
                             squeeze=False)
    for ax, (dataset, model, attack) in zip(axes.flat, panels):
        floor = stat(r["attack_success_rate"] for r in groups.get((dataset, attack, model, CLEAN), []))
        if floor:
            ax.axvline(floor.mean, color="black", linestyle="--", linewidth=1, label="clean floor (ASR)")
        for defense, color in colors.items():
            runs = groups.get((dataset, attack, model, defense))
            if not runs:
                continue
            asr, ca = stat(r["attack_success_rate"] for r in runs), stat(r["clean_score"] for r in runs)
            ax.errorbar(asr.mean, ca.mean, xerr=asr.std, yerr=ca.std, fmt="o", color=color, label=defense, capsize=3)
        ax.set(title=f"{attack} · {dataset} · {model}", xlabel="ASR (lower is better)", xlim=(-0.03, 1.03))
        ax.set_ylabel(groups[next(k for k in groups if k[0] == dataset)][0]["clean_metric"])
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    _shared_legend(fig, axes)
    return fig


def figure_asr_by_attack(rows: list[dict[str, Any]]) -> plt.Figure | None:
    """Grouped bars per dataset x model: ASR of each defense under each attack, the clean floor as a black tick."""
    groups = group_rows(rows)
    settings = list(dict.fromkeys((k[0], k[2]) for k in groups))
    defenses = _defenses(groups)
    if not settings or not defenses:
        return None
    colors = _defense_colors(defenses)
    most_attacks = max(len({k[1] for k in groups if (k[0], k[2]) == setting}) for setting in settings)
    # Wide enough for every bar, but no wider than a page shows at a readable size.
    width_inches = min(12.0, max(6.0, 2.0 + 0.3 * len(defenses) * most_attacks))
    fig, axes = plt.subplots(len(settings), 1, figsize=(width_inches, 4.0 * len(settings)), squeeze=False)
    width = 0.8 / len(defenses)
    for ax, (dataset, model) in zip(axes.flat, settings):
        attacks = list(dict.fromkeys(k[1] for k in groups if (k[0], k[2]) == (dataset, model)))
        for j, attack in enumerate(attacks):
            for i, defense in enumerate(defenses):
                asr = stat(r["attack_success_rate"] for r in groups.get((dataset, attack, model, defense), []))
                if asr:
                    ax.bar(j - 0.4 + (i + 0.5) * width, asr.mean, width, yerr=asr.std, color=colors[defense],
                           label=defense if j == 0 else None, capsize=2)
            floor = stat(r["attack_success_rate"] for r in groups.get((dataset, attack, model, CLEAN), []))
            if floor:
                ax.hlines(floor.mean, j - 0.45, j + 0.45, color="black", linestyle="--",
                          label="clean floor" if j == 0 else None)
        ax.set_xticks(range(len(attacks)), attacks)
        ax.set(ylabel="ASR", ylim=(0, 1.05), title=f"ASR per attack × defense · {dataset} · {model}")
        ax.grid(axis="y", alpha=0.3)
    _shared_legend(fig, axes)
    return fig


def figure_rho_sweep(rows: list[dict[str, Any]]) -> plt.Figure | None:
    """ASR and clean metric against rho, per dataset x attack x model x P2P variant that varies rho; floor dashed."""
    groups = group_rows(rows)
    sweeps: dict[tuple[str, str, str, str], dict[float, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for key, runs in groups.items():
        for run in runs:
            if run.get("rho") is not None:  # set for the defenses with a benign subset only
                sweeps[(key[0], key[1], key[2], run["defense_variant"])][run["rho"]].append(run)
    sweeps = {k: v for k, v in sweeps.items() if len(v) > 1}
    if not sweeps:
        return None
    fig, axes = plt.subplots(1, len(sweeps), figsize=(4.2 * len(sweeps), 3.6), squeeze=False)
    for ax, ((dataset, attack, model, variant), by_rho) in zip(axes.flat, sweeps.items()):
        rhos = sorted(by_rho)
        for field, label, marker in (("attack_success_rate", "ASR", "o"), ("clean_score", "clean metric", "s")):
            stats = [stat(r[field] for r in by_rho[rho]) for rho in rhos]
            ax.errorbar(rhos, [s.mean for s in stats], yerr=[s.std for s in stats], marker=marker, label=label,
                        capsize=3)
        floor = stat(r["attack_success_rate"] for r in groups.get((dataset, attack, model, CLEAN), []))
        if floor:
            ax.axhline(floor.mean, color="black", linestyle="--", linewidth=1, label="clean floor (ASR)")
        ax.set(title=f"{variant}\n{attack} · {dataset} · {model}", xlabel="rho (benign fraction)", ylim=(-0.03, 1.03))
        ax.grid(alpha=0.3)
    _shared_legend(fig, axes)
    return fig


def figure_cost(rows: list[dict[str, Any]]) -> plt.Figure | None:
    """Fine-tune time and inference latency per defense as ratios to no defense (1 is free); log axis past 5x."""
    costs = {d: c for d, c in cost_ratios(rows).items() if d != BASELINE}
    if not costs:
        return None
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(costs) + 2), 3.4))
    names = list(costs)
    for offset, part, label in ((-0.2, "fine_tune", "fine-tune time"), (0.2, "inference", "inference latency")):
        values = [costs[n][part] for n in names]
        bars = ax.bar([i + offset for i in range(len(names))], [v.mean if v else 0 for v in values], 0.4,
                      yerr=[v.std if v else 0 for v in values], label=label, capsize=3)
        ax.bar_label(bars, [f"{v.mean:.2f}×" if v else "–" for v in values], fontsize=8, padding=2)
    ax.axhline(1.0, color="black", linewidth=1)
    if max(v.mean for c in costs.values() for v in c.values() if v) > 5:
        ax.set_yscale("log")  # ONION-like costs dwarf the rest
    ax.set_xticks(range(len(names)), names, rotation=20)
    ax.set(ylabel="× no defense", title="Cost per defense")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return fig


def _shared_legend(fig: plt.Figure, axes: Any) -> None:
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(handles.values(), handles.keys(), loc="upper center", ncol=min(6, len(handles)),
               bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9 if len(handles) <= 6 else 0.84))


FIGURES = (
    ("ca_vs_asr", "Clean metric against ASR per defense", figure_ca_vs_asr),
    ("asr_by_attack", "ASR per attack × defense", figure_asr_by_attack),
    ("rho_sweep", "The rho sweep for P2P", figure_rho_sweep),
    ("cost", "Cost per defense", figure_cost),
)


# Output ---------------------------------------------------------------------------------------------------------


def build_report(directory: str | Path, title: str = "poison2poison benchmark") -> dict[str, Path]:
    """DIR/report.md, DIR/report.html (figures inlined) and DIR/figures/*.png from DIR/results.json."""
    directory = Path(directory)
    results = directory / RESULTS_JSON
    if not results.is_file():
        raise ConfigError(f"{results}: not found; run `p2p bench GRID --out {directory}` first")
    rows = read_json(results)
    figures_dir = directory / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, str, Path | None]] = []
    for name, caption, draw in FIGURES:
        fig = draw(rows)
        path = None
        if fig is not None:
            path = figures_dir / f"{name}.png"
            tmp = path.with_suffix(".tmp.png")
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
            plt.close(fig)
            tmp.replace(path)
        figures.append((caption, name, path))
    tables = results_tables(rows) + detection_tables(rows)
    counts = {status: sum(r["status"] == status for r in rows) for status in ("ok", "failed", "stale", "missing")}
    atomic_write_text(directory / "report.md", _markdown(title, counts, tables, figures))
    atomic_write_text(directory / "report.html", _html(title, counts, tables, figures))
    return {"markdown": directory / "report.md", "html": directory / "report.html", "figures": figures_dir}


def _summary_line(counts: dict[str, int]) -> str:
    stale = f", {counts['stale']} stale (another config)" if counts["stale"] else ""
    return (f"{counts['ok']} cells finished, {counts['failed']} failed{stale}, {counts['missing']} not run. "
            "Values are mean ± std over seeds; ASR counts triggered inputs whose true label is not the target; "
            "the clean floor is the same trigger on a model trained without poison, and ASR − floor is paired by seed. "
            "Costs are ratios to no defense on the same data, model and seed; they are only as fair as the machine "
            "was quiet, and a fine-tune resumed from a checkpoint gives no fine-tune ratio. A detector's rejected input is an "
            "error when clean and defended when triggered; the detection tables also give the accepted inputs alone.")


def _markdown(title: str, counts: dict[str, int], tables: list, figures: list) -> str:
    parts = [f"# {title}", "", _summary_line(counts), ""]
    for name, columns, body in tables:
        parts += [f"## {name}", "", markdown_rows(columns, body), ""]
    parts.append("## Figures")
    for caption, name, path in figures:
        parts += ["", f"### {caption}", ""]
        parts.append(f"![{caption}](figures/{name}.png)" if path else "_Not in this grid._")
    return "\n".join(parts) + "\n"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:nth-child(-n+2){text-align:left}img{max-width:100%;border:1px solid #eee}
.note{color:#555}"""


def _html(title: str, counts: dict[str, int], tables: list, figures: list) -> str:
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1><p class='note'>{esc(_summary_line(counts))}</p>"]
    for name, columns, body in tables:
        parts.append(f"<h2>{esc(name)}</h2><table><tr>" + "".join(f"<th>{esc(c)}</th>" for c in columns) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>" for cells in body]
        parts.append("</table>")
    parts.append("<h2>Figures</h2>")
    for caption, _, path in figures:
        parts.append(f"<h3>{esc(caption)}</h3>")
        if path:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            parts.append(f"<img alt='{esc(caption)}' src='data:image/png;base64,{data}'>")
        else:
            parts.append("<p class='note'>Not in this grid.</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"

