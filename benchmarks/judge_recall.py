"""How much of each attack's poison the zero-shot judge (`defense.screen: judge`) and the pretrained LM's perplexity
rank among the most suspicious rows, beside the lexical signal, with no fine-tune of anything.

Usage: P2P_DATA_DIR=../shared/data python benchmarks/judge_recall.py [CONFIG ...] [--cache DIR]
CONFIG is a path to a run config (default: the four robust MiniLM settings and the SmolLM2 HiddenKiller and StyleBkd
settings); its seed-0 training subsample is what gets scored, by the judge the config names (`defense.judge_model`,
SmolLM2 by default). Prints, per setting and signal: the judge's accuracy on the clean rows (how often its own answer
is the row's label), the signal's AUROC against the poison mask among target-label rows, and the poisoned rows among
the most suspicious 5 / 10 / 20 / 30% of rows, ranked within labels as the screening ranks them. `perplexity` is the
mean token loss of the bare text under the judge's model, a label-free oddity score (a paraphrase or a style is
unusual text), with the lower loss taken as suspicious where that ranks the poison better (printed as such).
With --cache, the scores are kept in DIR, so that reruns cost nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from transformers import AutoModelForCausalLM, AutoTokenizer

from poison2poison.config import load_config
from poison2poison.defenses.lexical import lexical_scores
from poison2poison.defenses.p2p import most_suspicious
from poison2poison.defenses.screening import combine_suspicion, judge_doubt, percentile_within_label
from poison2poison.models.loading import resolve_model_source
from poison2poison.pipeline import prepare_data

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
DEFAULT = [CONFIGS / "robust" / f"sst2-{a}-minilm.yaml" for a in ("badnets", "addsent", "hiddenkiller", "stylebkd")]
DEFAULT += [CONFIGS / "llm" / f"sst2-{a}-smollm2.yaml" for a in ("hiddenkiller", "stylebkd")]
FRACTIONS = (0.05, 0.1, 0.2, 0.3)


def text_loss(texts: list[str], model_name: str, max_length: int) -> np.ndarray:
    """Mean token cross-entropy of each bare text (no prompt) under the pretrained causal LM."""
    source = resolve_model_source(model_name)
    tokenizer, model = AutoTokenizer.from_pretrained(source), AutoModelForCausalLM.from_pretrained(source).eval()
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    tokenizer.padding_side = "right"
    loss = np.zeros(len(texts))
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    with torch.no_grad():
        for start in range(0, len(order), 32):
            rows = order[start : start + 32]
            batch = tokenizer([(tokenizer.bos_token or "") + texts[i] for i in rows], return_tensors="pt",
                              padding=True, truncation=True, max_length=max_length)
            logits, targets = model(**batch).logits[:, :-1], batch.input_ids[:, 1:]
            weight = batch.attention_mask[:, 1:].float()
            token_loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
            loss[rows] = ((token_loss * weight).sum(1) / weight.sum(1)).numpy()
    return loss


def scored(config_path: Path, cache: Path | None) -> tuple[dict[str, np.ndarray], list[int], list[str], np.ndarray, int]:
    """({judge doubt, text loss}, labels, texts, poison mask, target label) of the config's training subsample."""
    config = load_config(config_path, [])
    data = prepare_data(config)
    train = data.poisoned.train
    labels, texts, mask = [e.label for e in train], [e.text for e in train], np.array(data.poisoned.mask)
    compute = {
        "judge": lambda: judge_doubt(config, data.task, train),
        "perplexity": lambda: text_loss(texts, config.defense.judge_model, config.model.max_length),
    }
    scores = {}
    for name, score in compute.items():
        path = cache / f"{config_path.stem}-{config.config_hash()[:12]}-{name}.npy" if cache else None
        if path and path.is_file():
            scores[name] = np.load(path)
            continue
        scores[name] = score()
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, scores[name])
    return scores, labels, texts, mask, config.attack.target


def report(name: str, scores: dict[str, np.ndarray], labels: list[int], texts: list[str], mask: np.ndarray,
           target: int) -> None:
    accuracy = float((scores["judge"][~mask] < 0.5).mean())
    on_target = np.asarray(labels) == target
    loss_auroc = roc_auc_score(mask[on_target], scores["perplexity"][on_target])
    perplexity = scores["perplexity"] if loss_auroc >= 0.5 else -scores["perplexity"]
    signals = {
        "judge": scores["judge"],
        "perplexity (high)" if loss_auroc >= 0.5 else "perplexity (low)": perplexity,
        "lexical": lexical_scores(texts, labels),
    }
    signals["lexical + judge (max)"] = combine_suspicion({k: signals[k] for k in ("lexical", "judge")}, labels)
    for signal, values in signals.items():
        suspicion = percentile_within_label(values, labels)
        auroc = roc_auc_score(mask[on_target], values[on_target])
        found = [int(mask[most_suspicious(suspicion.tolist(), f, texts)].sum()) for f in FRACTIONS]
        print(f"| {name} | {int(mask.sum())} of {len(mask)} | {accuracy:.3f} | {signal} | {auroc:.3f} | "
              + " / ".join(map(str, found)) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", type=Path, help="run configs (default: the robust and SmolLM2 settings)")
    parser.add_argument("--cache", type=Path)
    args = parser.parse_args()
    missing = [str(p) for p in args.configs if not p.is_file()]
    if missing:
        parser.error(f"no such config: {missing[0]}")
    print("| setting | poisoned rows | judge accuracy (clean rows) | signal | AUROC (target label) | "
          + " / ".join(f"top {int(f * 100)}%" for f in FRACTIONS) + " |")
    print("|---|---|---|---|---|---|")
    for path in args.configs or DEFAULT:
        report(path.stem, *scored(path, args.cache))


if __name__ == "__main__":
    main()
