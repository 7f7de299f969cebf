"""What the `p2p` commands print: results alone on stdout (strict JSON lines for `predict`), and every error as one
line on stderr, shown as it is (no markup read into it, no wrapping at the terminal's width), never a traceback."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from poison2poison.cli import main

TINY = ["--set", "data.train_size=160", "--set", "train.epochs=1", "--set", "train.batch_size=16", "--set",
        "model.tiny_hidden_size=64", "--set", "model.tiny_layers=2", "--set", "model.tiny_vocab_size=600", "--set",
        "model.max_length=64", "--set", "defense.screen=[lexical]"]


def p2p(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `p2p ARGS`, run as the console script runs it (stderr is not a terminal)."""
    monkeypatch.setattr(sys, "argv", ["p2p", *args])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code: int, err: str, *parts: str) -> None:
    """The command failed with one error line, the last thing it printed (a wrapped message would go on below)."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and lines[-1] == errors[0], err
    assert "Traceback" not in err
    for part in parts:
        assert part in errors[0], (part, errors[0])


def csv_with_names(data_dir: Path, path: Path) -> Path:
    """48 SST-2 dev rows as a CSV with the user's own column names and string labels."""
    rows = [json.loads(line) for line in (data_dir / "sst2" / "dev.jsonl").read_text().splitlines()[:48]]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["review", "sentiment"])
        writer.writerows([r["sentence"], ("negative", "positive")[r["label"]]] for r in rows)
    return path


@pytest.fixture(scope="module")
def defended(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A model defended from the command line on a CSV with string labels and its own field names."""
    folder = tmp_path_factory.mktemp("cli")
    data = csv_with_names(data_dir, folder / "reviews.csv")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["p2p", "defend", "--data", str(data), "--text-field", "review", "--label-field",
                                    "sentiment", "--task", "sentiment", "--model", "tiny", "--out",
                                    str(folder / "model"), *TINY])
        try:
            main()
        except SystemExit as exc:
            assert not exc.code
    return folder / "model"


def test_predict_writes_strict_json_lines_with_the_label_names(
    defended: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = tmp_path / "inputs.csv"
    inputs.write_text('review,id\n"a gripping, well acted film",1\n[/x] a dull mess,2\n', encoding="utf-8")
    code, out, err = p2p(["predict", str(defended), "--input", str(inputs), "--text-field", "review", "--text",
                          "fine"], capsys, monkeypatch)
    assert code == 0, err
    answers = [json.loads(line) for line in out.split("\n")[:-1]]  # every line is JSON: no blank line, no bar
    assert out.endswith("\n") and [a["text"] for a in answers] == ["fine", "a gripping, well acted film",
                                                                    "[/x] a dull mess"]
    assert {a["label_name"] for a in answers} <= {"negative", "positive"}
    assert all(a["label_name"] == ("negative", "positive")[a["label"]] for a in answers)


def test_a_folder_holding_a_torch_pickle_instead_of_safetensors_is_refused_in_one_line(
    defended: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "bin"
    shutil.copytree(defended, folder)
    weights = folder / "model" / "model.safetensors"
    torch.save(load_file(weights), folder / "model" / "pytorch_model.bin")
    weights.unlink()
    code, out, err = p2p(["predict", str(folder), "--text", "fine"], capsys, monkeypatch)
    one_line_error(code, err, "no safetensors weights", "pytorch_model.bin")
    assert out == ""


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing-input", ["no such file"]),
        ("input-is-a-folder", ["is a directory, not a file"]),
        ("data-is-a-folder", ["is a directory, not a file"]),
        ("markup-in-a-path", ["[/x]", "no such file"]),
        ("markup-in-a-label", ["label '[/x]' is not one of the labels (negative, positive)"]),
        ("broken-yaml-in-set", ["override 'train.epochs=['", "not valid YAML"]),
        ("empty-file", ["no rows"]),
        ("blank-file", ["no rows"]),
        ("long-message-narrow-terminal", ["no such file"]),
        ("name-too-long-for-the-system", ["cannot be read (File name too long)"]),
    ],
)
def test_errors_are_one_line_printed_as_they_are(
    case: str, expected: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text('{"text": "fine", "label": 1}\n{"text": "bad", "label": 0}\n')
    out_dir = str(tmp_path / "out")
    if case == "missing-input":
        args = ["predict", out_dir, "--input", str(tmp_path / "none.txt")]
    elif case == "input-is-a-folder":
        args = ["predict", out_dir, "--input", str(tmp_path)]
    elif case == "data-is-a-folder":
        args = ["scan", "--data", str(tmp_path)]
    elif case == "markup-in-a-path":
        args = ["scan", "--data", str(tmp_path / "[" / "x]" / "data.jsonl")]
    elif case == "markup-in-a-label":
        bad = tmp_path / "labels.jsonl"
        bad.write_text('{"text": "fine", "label": "positive"}\n{"text": "odd", "label": "[/x]"}\n')
        args = ["defend", "--data", str(bad), "--task", "sentiment", "--model", "tiny", "--out", out_dir]
    elif case == "broken-yaml-in-set":
        args = ["defend", "--data", str(good), "--model", "tiny", "--out", out_dir, "--set", "train.epochs=["]
    elif case in ("empty-file", "blank-file"):
        empty = tmp_path / "empty.jsonl"
        empty.write_text("" if case == "empty-file" else "\n  \n\n")
        args = ["scan", "--data", str(empty)]
    elif case == "name-too-long-for-the-system":
        args = ["scan", "--data", str(tmp_path / ("x" * 300 + ".jsonl"))]
    else:
        monkeypatch.setenv("COLUMNS", "30")
        args = ["scan", "--data", str(tmp_path / ("a-long-folder-name-" * 8) / "data.jsonl")]
    code, out, err = p2p(args, capsys, monkeypatch)
    one_line_error(code, err, *expected)
    assert out == "" and not Path(out_dir).exists()  # nothing written when the input is refused


def test_a_jsonl_file_with_a_byte_order_mark_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "bom.jsonl"
    data.write_bytes(b'\xef\xbb\xbf{"text": "fine", "label": 1}\n{"text": "bad", "label": 0}\n')
    code, out, err = p2p(["scan", "--data", str(data)], capsys, monkeypatch)
    assert code == 0 and "0 of 2 rows carry a confirmed trigger" in out, err
