"""The manifest, p2p.json: what every query of a saved model needs (the trigger, the cue, the output -> label map),
validated when it is read and bound to the weights it was made with.

Format 2 records, when it is written, the sha256 of every file under model/ and of the manifest's own fields; reading
it checks both and refuses a model whose files or manifest changed since, saying what changed. This catches mix-ups
and edits (a trigger set to "" would otherwise serve the model undefended); it is no seal against someone who can
write the folder, who could retrain the model anyway (docs/security.md). Format 1 manifests are refused: nothing in
them says which weights they belong to, so the model must be made again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import trains_benign_subset
from .defenses import DEFENSES
from .errors import ModelSetupError
from .io import atomic_write_json, content_hash, file_hash, require_safetensors
from .rundir import MANIFEST
from .specs import OFFICIAL_TRIGGER, GenerationSpec, InferenceSpec

log = logging.getLogger(__name__)

MANIFEST_FORMAT = 2
MODEL_DIR = "model"
BINDING = "binding"
REMAKE = "make the model again with `p2p defend` (a `p2p run` folder: delete p2p.json and metrics.json and run it again)"


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InferenceFields(_Fields):
    defense: str = Field(min_length=1)
    trigger: str
    cue: str = Field(min_length=1)
    label_of_output: list[int] = Field(min_length=2)


class BindingFields(_Fields):
    model_files: dict[str, str] = Field(min_length=1, description="path under model/ -> sha256 when written")
    manifest_sha256: str = Field(description="sha256 of every other field of the manifest when written")


class ClassifierManifest(_Fields):
    format: Literal[2]
    task_type: Literal["classification"]
    inference: InferenceFields
    label_names: list[str] = Field(min_length=2)
    task: str = Field(min_length=1)
    max_length: int = Field(ge=16)
    defense_details: dict[str, Any]
    input_guard: str | None
    binding: BindingFields

    @property
    def spec(self) -> InferenceSpec:
        i = self.inference
        return InferenceSpec(i.defense, i.trigger, i.cue, tuple(i.label_of_output))


class GenerationFields(_Fields):
    defense: Literal["none", "p2p", "p2p+"]
    trigger: str
    cue: str = Field(min_length=1)
    output_prefix: str


class GeneratorManifest(_Fields):
    format: Literal[2]
    task_type: Literal["generation"]
    task: str = Field(min_length=1)
    template: str = Field(min_length=1)
    generation: GenerationFields
    max_length: int = Field(ge=16)
    max_new_tokens: int = Field(ge=1)
    binding: BindingFields

    @property
    def spec(self) -> GenerationSpec:
        g = self.generation
        return GenerationSpec(g.defense, g.trigger, g.cue, g.output_prefix)


Manifest = TypeVar("Manifest", ClassifierManifest, GeneratorManifest)


def model_file_hashes(model_dir: Path) -> dict[str, str]:
    """sha256 of every file under `model_dir`, by its path relative to it."""
    return {p.relative_to(model_dir).as_posix(): file_hash(p) for p in sorted(model_dir.rglob("*")) if p.is_file()}


def _fields_hash(data: dict[str, Any]) -> str:
    """The hash of the manifest without its binding, as JSON will read it back."""
    return content_hash(json.loads(json.dumps({k: v for k, v in data.items() if k != BINDING})))


def write_manifest(run_dir: Path, fields: dict[str, Any]) -> None:
    """Write RUN_DIR/p2p.json (owner-only, as every atomic write), bound to the files under RUN_DIR/model now."""
    data = {**fields, "format": MANIFEST_FORMAT}
    data[BINDING] = {"model_files": model_file_hashes(run_dir / MODEL_DIR), "manifest_sha256": _fields_hash(data)}
    atomic_write_json(run_dir / MANIFEST, data)


def read_manifest(directory: Path) -> dict[str, Any]:
    """p2p.json as written, refused unless it is of the current format; the fields are checked by the reader of
    its task type (`classifier_manifest`, `generator_manifest`)."""
    path = directory / MANIFEST
    if not path.is_file():
        raise ModelSetupError(f"{directory}: no {MANIFEST}; point at a folder written by `p2p defend` or `p2p run`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelSetupError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelSetupError(f"{path}: the top level must be an object")
    version = data.get("format")
    if version in (None, 1):
        raise ModelSetupError(f"{path}: field 'format': {version}, written by an older version and bound to no "
                              f"weights; {REMAKE}")
    if version != MANIFEST_FORMAT:
        raise ModelSetupError(f"{path}: field 'format': {version!r}; this version reads format {MANIFEST_FORMAT}")
    if path.stat().st_mode & 0o077:
        log.warning("%s can be read by other users: it holds the model's trigger (chmod 600 it)", path)
    return data


def classifier_manifest(directory: Path, data: dict[str, Any]) -> ClassifierManifest:
    """The validated manifest of a saved classifier, once its fields agree with each other and the model's files
    are those it was written with; one error lists every problem."""
    manifest = _validated(ClassifierManifest, directory, data, inconsistencies)
    _warn_if_weak(directory / MANIFEST, manifest.inference.defense, manifest.inference.trigger)
    return manifest


def generator_manifest(directory: Path, data: dict[str, Any]) -> GeneratorManifest:
    """The validated manifest of a saved generator (`p2p run` on a generation dataset), checked as a classifier's."""
    manifest = _validated(GeneratorManifest, directory, data, generator_inconsistencies)
    _warn_if_weak(directory / MANIFEST, manifest.generation.defense, manifest.generation.trigger)
    return manifest


def _validated(
    schema: type[Manifest], directory: Path, data: dict[str, Any], problems_of: Callable[[Manifest], list[tuple[str, str]]]
) -> Manifest:
    """`data` read as `schema`, refused with every bad field named, or when the model's files changed since."""
    path = directory / MANIFEST
    try:
        manifest = schema.model_validate(data)
    except ValidationError as exc:
        raise ModelSetupError(f"{path}: " + "; ".join(
            f"field '{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors())) from None
    problems = [f"field '{field}': {problem}" for field, problem in problems_of(manifest)]
    if problems:
        raise ModelSetupError(f"{path}: " + "; ".join(problems))
    if (directory / MODEL_DIR).is_dir():
        require_safetensors(directory / MODEL_DIR)
    changed = binding_changes(directory, data, manifest.binding)
    if changed:
        raise ModelSetupError(f"{directory}: the model is not the one {MANIFEST} was written for: "
                              f"{'; '.join(changed)}. Restore the files, or {REMAKE}")
    return manifest


def inconsistencies(manifest: ClassifierManifest) -> list[tuple[str, str]]:
    """(field, problem) for every way the inference section disagrees with the labels or the defense."""
    inference, n = manifest.inference, len(manifest.label_names)
    outputs, problems = inference.label_of_output, []
    if inference.defense not in DEFENSES:
        problems.append(("inference.defense", f"unknown defense '{inference.defense}'"))
    if len(outputs) not in (n, 2 * n):
        problems.append(("inference.label_of_output", f"{len(outputs)} outputs for {n} labels; expected {n} or {2 * n}"))
    if set(outputs) != set(range(n)):
        problems.append(("inference.label_of_output", f"maps outputs to {sorted(set(outputs))}, not to every label "
                                                      f"0..{n - 1}"))
    uses_trigger = trains_benign_subset(inference.defense) or len(outputs) == 2 * n
    if uses_trigger and not inference.trigger.strip():
        problems.append(("inference.trigger", f"empty; a model defended by '{inference.defense}' must be queried "
                                              f"with its trigger, and without it the backdoor fires"))
    if not uses_trigger and inference.trigger:
        problems.append(("inference.trigger", f"set, but defense '{inference.defense}' uses no trigger"))
    return problems


def generator_inconsistencies(manifest: GeneratorManifest) -> list[tuple[str, str]]:
    """(field, problem) for every way a generator's manifest disagrees with itself."""
    generation, problems = manifest.generation, []
    if "{source}" not in manifest.template:
        problems.append(("template", "has no {source} slot for the query"))
    if manifest.max_new_tokens >= manifest.max_length:
        problems.append(("max_new_tokens", f"{manifest.max_new_tokens} leaves no room for a prompt within max_length "
                                           f"{manifest.max_length}"))
    if generation.defense != "none" and not (generation.trigger.strip() and generation.output_prefix.strip()):
        problems.append(("generation", f"a model defended by '{generation.defense}' needs its trigger and its safe "
                                       "prefix, and without the trigger the backdoor fires"))
    if generation.defense == "none" and (generation.trigger or generation.output_prefix):
        problems.append(("generation", "defense 'none' uses no trigger and no safe prefix"))
    return problems


def binding_changes(directory: Path, data: dict[str, Any], binding: BindingFields) -> list[str]:
    """What differs between the manifest and model files now and when the manifest was written."""
    changes = []
    if _fields_hash(data) != binding.manifest_sha256:
        changes.append(f"{MANIFEST} was edited after it was written")
    now = model_file_hashes(directory / MODEL_DIR)
    for name in sorted(set(binding.model_files) | set(now)):
        then, current = binding.model_files.get(name), now.get(name)
        if then is None:
            changes.append(f"{MODEL_DIR}/{name} was added")
        elif current is None:
            changes.append(f"{MODEL_DIR}/{name} is missing")
        elif then != current:
            changes.append(f"{MODEL_DIR}/{name} changed (sha256 {then[:12]} when written, {current[:12]} now)")
    return changes


def _warn_if_weak(path: Path, defense: str, trigger: str) -> None:
    """Loud, not fatal: a model that is served without P2P's protection, or with the published trigger."""
    if not trigger:
        log.warning("%s: defense '%s' applies no trigger; the model answers as trained", path, defense)
    elif trigger == OFFICIAL_TRIGGER:
        log.warning("%s: the model uses the published trigger; an attacker who knows P2P can plant a backdoor that "
                    "fires through it (docs/security.md). `p2p defend` draws a secret one by default", path)
