"""The run spec: one TOML file naming the model, the datasets, the markers and the measurements.

Parsing turns every mistake into a :class:`~evidence.errors.ConfigError` that
names the file and the offending key or line; a spec object that exists is valid.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, ValidationError

from evidence.datasets import Dataset, Prompt, read_dataset
from evidence.errors import ConfigError, config_error_from_validation, missing_extra
from evidence.external import parse_declarations

__all__ = [
    "Dataset",
    "Prompt",
    "RunSpec",
    "SpecProblem",
    "SpecReading",
    "dataset_labels",
    "default_runspec_path",
    "is_chat_model_dir",
    "load_runspec",
    "natural_language_runspec_path",
    "read_runspec",
]

def dataset_labels() -> dict[str, frozenset[str]]:
    """Known dataset names and the labels each accepts: what the registered measurements declare.

    The registry is part of the [measure] extra; without it this raises the one missing-extra error.
    """
    try:
        from evidence.measure import registry
    except ModuleNotFoundError as exc:
        raise missing_extra("measure", exc) from None
    return registry.dataset_labels()


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _ModelSection(_Strict):
    path: str | None = None
    organism: str | None = None
    device: Literal["cpu", "cuda", "mps"] = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    n_gpus: Annotated[int, Field(ge=1)] = 1


class _RunSection(_Strict):
    seed: Annotated[int, Field(ge=0, lt=2**31)] = 0
    measurements: list[str] | None = None
    policy: str | None = None
    external_evals: list[str] = Field(default_factory=list)
    calibration_organisms: list[str] = Field(default_factory=list)


class _SpecFile(_Strict):
    run: _RunSection = Field(default_factory=_RunSection)
    model: _ModelSection = Field(default_factory=_ModelSection)
    datasets: dict[str, str] = Field(default_factory=dict)
    markers: dict[str, list[Annotated[str, StringConstraints(min_length=1)]]] = Field(default_factory=dict)
    measurements: dict[str, dict[str, JsonValue]] = Field(default_factory=dict)
    external: dict[str, dict[str, JsonValue]] = Field(default_factory=dict)


@dataclass(frozen=True)
class RunSpec:
    """A parsed, validated run spec."""

    source: Path | None
    sha256: str
    seed: int
    model_path: Path | None
    model_organism: str | None
    measurements: dict[str, dict[str, Any]]
    datasets: dict[str, Dataset] = field(default_factory=dict)
    markers: dict[str, list[str]] = field(default_factory=dict)
    calibration_organisms: tuple[str, ...] = ()
    policy_path: Path | None = None
    external_eval_paths: tuple[Path, ...] = ()
    external_declarations: dict[str, Any] = field(default_factory=dict)
    model_device: str = "cpu"
    model_dtype: str = "float32"
    model_n_gpus: int = 1

    def with_external_evals(self, paths: Sequence[Path]) -> RunSpec:
        """A copy that also cross-references these evaluation logs."""
        return replace(self, external_eval_paths=(*self.external_eval_paths, *paths))

    def with_model(self, model: str) -> RunSpec:
        """A copy that measures ``model`` instead: a directory, an organism, or a model in the local hub cache.

        See :func:`evidence.model.resolve_model_name`.
        """
        from evidence import organisms, population
        from evidence.model import resolve_model_name

        def is_organism(name: str) -> bool:
            return name in organisms.ORGANISM_NAMES or population.is_member(name)

        resolved = resolve_model_name(model, known_organisms=organisms.ORGANISM_NAMES, is_organism=is_organism)
        if isinstance(resolved, Path):
            return replace(self, model_path=resolved, model_organism=None)
        return replace(self, model_path=None, model_organism=resolved)

    def with_placement(
        self, *, device: str | None = None, dtype: str | None = None, n_gpus: int | None = None
    ) -> RunSpec:
        """A copy that measures on ``device`` (``n_gpus`` of them) in ``dtype``; None keeps what the spec says."""
        return replace(
            self,
            model_device=device or self.model_device,
            model_dtype=dtype or self.model_dtype,
            model_n_gpus=n_gpus if n_gpus is not None else self.model_n_gpus,
        )


def default_runspec_path(model: str | None = None) -> Path:
    """The run spec `interp-dossier run` uses when given none.

    The standard suite on the reference organisms; or, when ``model`` (what ``--model`` says)
    names a Hugging Face chat model directory (:func:`is_chat_model_dir`), the same suite with the
    project's prompt sets for natural-language chat models (:func:`natural_language_runspec_path`).
    Organisms and population members keep their own synthetic sets.
    """
    if model is not None:
        from evidence import organisms, population
        from evidence.model import resolve_model_name

        def is_organism(name: str) -> bool:
            return name in organisms.ORGANISM_NAMES or population.is_member(name)

        resolved = resolve_model_name(model, known_organisms=organisms.ORGANISM_NAMES, is_organism=is_organism)
        if isinstance(resolved, Path) and is_chat_model_dir(resolved):
            return natural_language_runspec_path()
    return Path(str(resources.files("evidence") / "specs" / "default.toml"))


def natural_language_runspec_path() -> Path:
    """The run spec for natural-language chat models: the standard suite on the project's chat prompt sets."""
    return Path(str(resources.files("evidence") / "specs" / "natural-language.toml"))


def is_chat_model_dir(path: Path) -> bool:
    """Whether ``path`` is a Hugging Face model directory whose tokenizer carries a chat template.

    Transformers writes the template to ``chat_template.jinja`` (or ``chat_template.json``), older
    releases into ``tokenizer_config.json``; an unreadable configuration counts as no template.
    """
    if not path.is_dir():
        return False
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    try:
        config = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and bool(config.get("chat_template"))


def load_runspec(path: Path, *, data_overrides: Mapping[str, Path] | None = None) -> RunSpec:
    """Read and validate a run spec file; datasets are loaded and digested.

    The first problem is raised as a ConfigError (:func:`read_runspec` collects them all).
    """
    reading = read_runspec(path, data_overrides=data_overrides)
    spec, problems = reading.spec, reading.problems
    if spec is None or problems:  # read_runspec reports a problem whenever it returns no spec
        raise problems[0].error
    return spec


@dataclass(frozen=True)
class SpecProblem:
    """One problem of a run spec file: ``source`` ``"spec"`` or ``"datasets"``, and the dataset it is about, if any."""

    source: str
    error: ConfigError
    dataset: str | None = None


@dataclass(frozen=True)
class SpecReading:
    """What :func:`read_runspec` made of a run spec file: the spec and every problem found.

    ``spec`` is None when the file cannot be read as a run spec at all; otherwise it holds what
    could be read (a measurement with an unknown id and a dataset that does not load are left
    out), and it is the valid spec exactly when there is no problem.
    """

    spec: RunSpec | None
    problems: tuple[SpecProblem, ...] = ()


def read_runspec(path: Path, *, data_overrides: Mapping[str, Path] | None = None) -> SpecReading:
    """Read a run spec file and collect every problem instead of stopping at the first."""
    try:
        raw_bytes, parsed = _parse_file(path)
    except ConfigError as exc:
        return SpecReading(spec=None, problems=(SpecProblem("spec", exc),))
    unknown = _unknown_measurements(parsed, path)
    problems = [SpecProblem("spec", exc) for _, exc in unknown]
    model = parsed.model
    base = path.parent
    model_path = (base / model.path).resolve() if model.path is not None else None

    dataset_paths = {name: base / rel for name, rel in parsed.datasets.items()}
    for name, override in (data_overrides or {}).items():
        dataset_paths[name] = override
    datasets: dict[str, Dataset] = {}
    for name, dataset_path in sorted(dataset_paths.items()):
        try:
            datasets[name] = load_dataset(name, dataset_path)
        except ConfigError as exc:
            problems.append(SpecProblem("datasets", exc, dataset=name))

    measurements = dict(parsed.measurements)
    if parsed.run.measurements is not None:
        unknown_params = sorted(set(measurements) - set(parsed.run.measurements))
        if unknown_params:
            problems.append(SpecProblem("spec", ConfigError(
                f"run spec {path}: parameters given for {unknown_params}, "
                "which [run].measurements does not select",
                hint="add them to [run].measurements or remove their tables",
            )))  # fmt: skip
        measurements = {m: dict(measurements.get(m, {})) for m in parsed.run.measurements}
    if not measurements:
        problems.append(SpecProblem("spec", ConfigError(
            f"run spec {path} selects no measurement",
            hint="list them in [run].measurements or give [measurements.\"ID\"] tables",
        )))  # fmt: skip
    for measurement_id, _ in unknown:  # reported above; what cannot run is left out
        measurements.pop(measurement_id, None)
    try:
        declarations = parse_declarations(parsed.external, source=str(path))
    except ConfigError as exc:
        problems.append(SpecProblem("spec", exc))
        declarations = {}

    spec = RunSpec(
        source=path.resolve(),
        sha256=hashlib.sha256(raw_bytes).hexdigest(),
        seed=parsed.run.seed,
        model_path=model_path,
        model_organism=model.organism,
        measurements=measurements,
        datasets=datasets,
        markers={k: list(v) for k, v in parsed.markers.items()},
        calibration_organisms=tuple(parsed.run.calibration_organisms),
        policy_path=(base / parsed.run.policy) if parsed.run.policy is not None else None,
        external_eval_paths=tuple(base / p for p in parsed.run.external_evals),
        external_declarations=declarations,
        model_device=model.device,
        model_dtype=model.dtype,
        model_n_gpus=model.n_gpus,
    )
    return SpecReading(spec=spec, problems=tuple(problems))


def _parse_file(path: Path) -> tuple[bytes, _SpecFile]:
    """The file's bytes and its parsed tables; a ConfigError when it is not a run spec at all."""
    try:
        raw_bytes = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"run spec {path} does not exist", hint="check the path") from None
    except OSError as exc:
        raise ConfigError(f"run spec {path} cannot be read: {exc.strerror}") from None
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"run spec {path} is not valid TOML: {exc}", hint="fix the syntax") from None
    try:
        parsed = _SpecFile.model_validate(raw)
    except ValidationError as exc:
        raise config_error_from_validation(
            exc, source=f"run spec {path}", hint="see the run spec section of the README for the accepted keys"
        ) from None
    if parsed.model.path is not None and parsed.model.organism is not None:
        raise ConfigError(
            f"run spec {path}: [model] needs exactly one of 'path' or 'organism'",
            hint='e.g. organism = "induction" or path = "checkpoints/my-model"',
        )
    return raw_bytes, parsed


def _unknown_measurements(parsed: _SpecFile, path: Path) -> list[tuple[str, ConfigError]]:
    """Every measurement id that no measurement registers, with the closest registered one."""
    try:  # the registry imports the suite (torch): only when a spec is read
        from evidence.measure.registry import get
    except ModuleNotFoundError as exc:
        raise missing_extra("measure", exc) from None

    named = [(m, f"run spec {path}: [run].measurements") for m in parsed.run.measurements or []]
    named += [(m, f'run spec {path}: [measurements."{m}"]') for m in parsed.measurements]
    unknown: list[tuple[str, ConfigError]] = []
    for measurement_id, where in named:
        try:
            get(measurement_id, where=where)
        except ConfigError as exc:
            unknown.append((measurement_id, exc))
    return unknown


def load_dataset(name: str, path: Path) -> Dataset:
    """Load a JSONL prompt set whose labels the registered measurements accept; problems name file and line."""
    return read_dataset(name, path, dataset_labels())
