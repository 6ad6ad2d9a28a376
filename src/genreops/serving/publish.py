"""Publish the registered champion/challenger (and canary, if one is on trial) into a Triton
model repository, as a new version.

The repository is rendered from the template in ``triton_models/``: each model gets a numbered
version folder (code, pickled model, label order, feature schema, drift reference) and a
``config.pbtxt`` whose version policy pins that version. Older versions stay on disk, so a
rollback only re-pins configs and reloads. ``publish.json`` keeps the history.

The ``canary`` slot always exists: with no canary on trial its version folder holds no model
and the predictor never calls it, so the set of models Triton loads never changes.

Refuses to publish when the models disagree on genres, or when either needs a feature
column the preprocessor does not compute (each may use its own subset of the schema's columns)
or was trained on a retired schema.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import py_compile
import shutil
import string
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import joblib
from filelock import FileLock, Timeout

from genreops.core.errors import GenreopsError, SchemaError
from genreops.core.files import atomic_write
from genreops.core.resources import triton_template_dir
from genreops.core.settings import NoveltySettings, Settings, default
from genreops.data.features import FEATURE_NAMES, SCHEMA_HASH, SCHEMA_VERSION, serving_columns
from genreops.monitoring.drift import REFERENCE_FILE
from genreops.serving.labels import LABELS_FILE
from genreops.serving.triton.errors import TritonModelError, TritonServerError

log = logging.getLogger(__name__)

TEMPLATE_DIR = triton_template_dir()  # shipped as genreops.triton_models
ENSEMBLE = "genre_ensemble"
# Load order: an ensemble after everything it calls; the predictor after its BLS target.
MODELS = ("preprocessor", "fallback", "canary", "predictor", "postprocessor", ENSEMBLE)
HISTORY_FILE = "publish.json"
PUBLISH_LOCK_FILE = ".publish.lock"  # one publisher at a time (see ``publishing``)
PUBLISH_LOCK_SECONDS = 600.0  # a publication loads and writes a few models; far less than this
MODEL_FILE = "model.joblib"
META_FILE = "model.json"
CHALLENGER_FILE = "challenger.json"
CANARY_FILE = "canary.json"  # in the predictor's folder: the canary's ModelRef, or null
CANARY_SHARE_TAG = "genreops.canary.share"  # on a canary's version: the share it answers
KEEP_VERSIONS = 10


class PublishError(GenreopsError):
    """The repository cannot be built or changed as asked."""


@dataclass(frozen=True)
class ServingOptions:
    """Values rendered into the template's ``config.pbtxt`` files."""

    max_batch: int = 16
    preprocess_instances: int = 2
    window_seconds: float = default("window_seconds")
    min_seconds: float = default("min_seconds")
    max_seconds: float = default("max_seconds")
    max_file_bytes: int = default("max_file_bytes")
    drift_expected_run: float = NoveltySettings.expected_run
    drift_ood_alpha: float = NoveltySettings.ood_alpha
    drift_neighbours: int = NoveltySettings.neighbours
    drift_kappa: float = NoveltySettings.kappa
    drift_close_fraction: float = NoveltySettings.close_fraction
    drift_window: int = default("drift_window")
    drift_min_samples: int = default("drift_min_samples")
    drift_test_every: int = default("drift_test_every")
    challenger_share: float = 0.0
    canary_share: float = 0.0  # share of all traffic the canary answers, when there is one
    # Load shedding in the preprocessor's queue (the pipeline's bottleneck): past this many
    # waiting requests, or this long waiting, a request is refused at once (UNAVAILABLE)
    # instead of queueing without limit; 0 turns either bound off (Triton's default).
    # GENREOPS_SERVING_MAX_QUEUE_SIZE / GENREOPS_SERVING_QUEUE_TIMEOUT_SECONDS.
    max_queue_size: int = default("serving_max_queue_size")
    queue_timeout_seconds: float = default("serving_queue_timeout_seconds")

    @classmethod
    def from_settings(cls, settings: Settings) -> ServingOptions:
        return cls(
            window_seconds=settings.window_seconds,
            min_seconds=settings.min_seconds,
            max_seconds=settings.max_seconds,
            max_file_bytes=settings.max_file_bytes,
            drift_expected_run=settings.drift_expected_run,
            drift_ood_alpha=settings.drift_ood_alpha,
            drift_neighbours=settings.drift_neighbours,
            drift_kappa=settings.drift_kappa,
            drift_close_fraction=settings.drift_close_fraction,
            drift_window=settings.drift_window,
            drift_min_samples=settings.drift_min_samples,
            drift_test_every=settings.drift_test_every,
            challenger_share=settings.challenger_share,
            canary_share=settings.canary_share,
            max_queue_size=settings.serving_max_queue_size,
            queue_timeout_seconds=settings.serving_queue_timeout_seconds,
        )

    def fields(self, genres: list[str], version_policy: str) -> dict[str, str]:
        values = {k.upper(): str(v) for k, v in asdict(self).items()}
        values.update(
            LABELS=",".join(genres),
            N_GENRES=str(len(genres)),
            N_FEATURES=str(len(FEATURE_NAMES)),
            SCHEMA_HASH=SCHEMA_HASH,
            VERSION_POLICY=version_policy,
            QUEUE_TIMEOUT_MICROSECONDS=str(round(self.queue_timeout_seconds * 1e6)),
        )
        return values


@dataclass(frozen=True)
class ModelRef:
    """A registered version as published: where it came from and what it knows."""

    name: str
    version: str
    run_id: str
    family: str
    schema_hash: str
    genres: list[str]
    schema_version: str = ""
    feature_names: list[str] = field(default_factory=list)  # the model's columns, its order

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"

    @classmethod
    def of(cls, classifier: Any, *, name: str, version: str, run_id: str) -> ModelRef:
        """What a ``GenreClassifier`` registered as ``name``/``version`` knows of itself."""
        return cls(
            name=name,
            version=version,
            run_id=run_id,
            family=classifier.family,
            schema_hash=classifier.schema_hash,
            genres=list(classifier.genres),
            schema_version=classifier.schema_version,
            feature_names=list(classifier.feature_names),
        )


@dataclass
class PublishResult:
    repository: Path
    version: int
    champion: ModelRef
    challenger: ModelRef
    created: bool  # False: these models were already the published version
    loaded: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    server_url: str | None = None  # the running server(s) it was loaded into, comma-separated
    canary: ModelRef | None = None
    unreachable: list[str] = field(default_factory=list)  # replicas passed over: not answering

    @property
    def entry(self) -> dict[str, Any]:
        """This version's history entry (what the monitoring store records)."""
        return next(v for v in self.history if v["version"] == self.version)


def _version_policy(version: int) -> str:
    return f"version_policy: {{ specific: {{ versions: [ {version} ] }} }}"


def read_history(repository: Path) -> dict[str, Any]:
    path = repository / HISTORY_FILE
    if not path.exists():
        return {"current": None, "versions": []}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _template_digest(template: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(template.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(template)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def render_configs(
    repository: Path, template: Path, version: int, genres: list[str], options: ServingOptions
) -> None:
    """Write every model's config.pbtxt pinned to ``version`` (atomic per file)."""
    values = options.fields(genres, _version_policy(version))
    for model in MODELS:
        text = (template / model / "config.pbtxt").read_text()
        try:
            rendered = string.Template(text).substitute(values)
        except (KeyError, ValueError) as error:
            raise PublishError(
                f"{template / model / 'config.pbtxt'}: bad placeholder {error}"
            ) from error
        (repository / model).mkdir(parents=True, exist_ok=True)
        atomic_write(repository / model / "config.pbtxt", rendered)


@contextmanager
def _staged(final: Path) -> Iterator[Path]:
    """Build a version folder next to its final place and move it in only when complete."""
    stage = final.with_name(f".staging-{final.name}-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        yield stage
        if final.exists():
            shutil.rmtree(final)
        stage.replace(final)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def check_pair(champion: ModelRef, challenger: ModelRef, canary: ModelRef | None = None) -> None:
    """Each model's columns must be among those the preprocessor computes (each model may use
    its own subset); all must name the same genres."""
    roles = [("champion", champion), ("challenger", challenger)]
    if canary is not None:
        roles.append(("canary", canary))
    for role, ref in roles:
        try:
            serving_columns(
                ref.feature_names,
                schema_version=ref.schema_version,
                source=f"{role} {ref.label} ({ref.family}, run {ref.run_id})",
            )
        except SchemaError as error:
            raise PublishError(str(error)) from error
    odd = [g for g in champion.genres if any(c in g for c in ',"\\\n')]
    if odd:
        raise PublishError(
            f"genre name {odd[0]!r}: commas, quotes and backslashes cannot be served"
        )
    for role, ref in roles[1:]:
        if ref.genres != champion.genres:
            raise PublishError(
                f"champion {champion.label} and {role} {ref.label} know different "
                f"genres ({champion.genres} vs {ref.genres}); register compatible models"
            )


def write_version(
    repository: Path,
    template: Path,
    version: int,
    *,
    champion: tuple[ModelRef, Any],
    challenger: tuple[ModelRef, Any],
    reference: Any,
    canary: tuple[ModelRef, Any] | None = None,
) -> None:
    """Every model's folder for ``version``: code from the template plus the artifacts."""
    champion_ref, champion_model = champion
    challenger_ref, challenger_model = challenger
    for model in MODELS:
        with _staged(repository / model / str(version)) as folder:
            code = template / model / "model.py"
            if code.exists():
                shutil.copy2(code, folder / "model.py")
                _compile_ahead(folder / "model.py")
            if model == "predictor":
                joblib.dump(champion_model, folder / MODEL_FILE)
                atomic_write(folder / META_FILE, json.dumps(asdict(champion_ref), indent=2))
                # who answers through the fallback model, for the MODEL output
                atomic_write(folder / CHALLENGER_FILE, json.dumps(asdict(challenger_ref), indent=2))
                canary_meta = asdict(canary[0]) if canary is not None else None
                atomic_write(folder / CANARY_FILE, json.dumps(canary_meta, indent=2))
                reference.to_parquet(folder / REFERENCE_FILE, index=False)
            elif model == "fallback":
                joblib.dump(challenger_model, folder / MODEL_FILE)
                atomic_write(folder / META_FILE, json.dumps(asdict(challenger_ref), indent=2))
            elif model == "canary" and canary is not None:
                joblib.dump(canary[1], folder / MODEL_FILE)
                atomic_write(folder / META_FILE, json.dumps(asdict(canary[0]), indent=2))
            elif model == "postprocessor":
                atomic_write(folder / LABELS_FILE, json.dumps(champion_ref.genres))
            elif model == "preprocessor":
                schema = {"version": SCHEMA_VERSION, "hash": SCHEMA_HASH, "names": FEATURE_NAMES}
                atomic_write(folder / "schema.json", json.dumps(schema))


def _compile_ahead(source: Path) -> None:
    """Write the model's bytecode with the folder, before Triton loads it. Otherwise the first
    stub to import it writes ``__pycache__`` into the version folder, Triton takes that newer
    file for a changed model, and the ensemble's load loads the model a second time (seen: the
    preprocessor, predictor and postprocessor loaded twice in every publish; the embedded
    stubs ignore PYTHONDONTWRITEBYTECODE)."""
    py_compile.compile(str(source), doraise=True)


@contextmanager
def publishing(repository: Path) -> Iterator[None]:
    """Hold the repository's publish lock (across processes and threads; re-entrant in one).

    Why: a publication reads the registry and the history, writes a version, reloads Triton
    and records the event. Two at once (the monitor promoting a canary while a pipeline or the
    retrain flow publishes) would take the same version number, and the one that read the
    registry first would publish over the newer aliases: the canary just put on trial would
    vanish from the repository with its trial still recorded.
    """
    repository = repository.resolve()  # one lock object per file, however it is named
    repository.mkdir(parents=True, exist_ok=True)
    lock = FileLock(repository / PUBLISH_LOCK_FILE, timeout=PUBLISH_LOCK_SECONDS, is_singleton=True)
    try:
        lock.acquire()
    except Timeout as error:
        raise PublishError(
            f"{repository}: another publication has held {PUBLISH_LOCK_FILE} for "
            f"{PUBLISH_LOCK_SECONDS:.0f} s; is a publish stuck? (its process holds the lock "
            "until it ends)"
        ) from error
    try:
        yield
    finally:
        lock.release()


def _prune(repository: Path, keep: list[int]) -> None:
    for model in MODELS:
        for folder in (repository / model).iterdir():
            if folder.is_dir() and folder.name.isdigit() and int(folder.name) not in keep:
                shutil.rmtree(folder, ignore_errors=True)


def publish_pair(
    repository: Path,
    *,
    champion: tuple[ModelRef, Any],
    challenger: tuple[ModelRef, Any],
    reference: Any,
    options: ServingOptions,
    template: Path = TEMPLATE_DIR,
    canary: tuple[ModelRef, Any] | None = None,
) -> PublishResult:
    """Add a version for these models unless they are the current one; configs pin it."""
    champion_ref, challenger_ref = champion[0], challenger[0]
    canary_ref = canary[0] if canary is not None else None
    check_pair(champion_ref, challenger_ref, canary_ref)
    if list(reference.columns) != list(champion_ref.feature_names):
        raise PublishError(
            f"the drift reference of {champion_ref.label} does not have the model's columns "
            f"({len(reference.columns)} columns, the model uses {len(champion_ref.feature_names)})"
        )
    with publishing(repository):
        history = read_history(repository)
        fingerprint = hashlib.sha256(
            json.dumps(
                [
                    champion_ref.label,
                    challenger_ref.label,
                    canary_ref.label if canary_ref is not None else None,
                    _template_digest(template),
                    asdict(options),
                ],
                sort_keys=True,
            ).encode()
        ).hexdigest()[:16]
        current = next((v for v in history["versions"] if v["version"] == history["current"]), None)
        if current is not None and current["fingerprint"] == fingerprint:
            return PublishResult(
                repository, current["version"], champion_ref, challenger_ref, created=False,
                history=history["versions"], canary=canary_ref,
            )  # fmt: skip
        version = max((v["version"] for v in history["versions"]), default=0) + 1
        write_version(
            repository, template, version, champion=champion, challenger=challenger,
            reference=reference, canary=canary,
        )  # fmt: skip
        render_configs(repository, template, version, champion_ref.genres, options)
        entry = {
            "version": version,
            "fingerprint": fingerprint,
            "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "champion": asdict(champion_ref),
            "challenger": asdict(challenger_ref),
            "canary": asdict(canary_ref) if canary_ref is not None else None,
            "options": asdict(options),
        }
        history["versions"].append(entry)
        history["current"] = version
        history["versions"] = history["versions"][-KEEP_VERSIONS:]
        atomic_write(repository / HISTORY_FILE, json.dumps(history, indent=2))
        _prune(repository, [v["version"] for v in history["versions"]])
        return PublishResult(
            repository, version, champion_ref, challenger_ref, created=True,
            history=history["versions"], canary=canary_ref,
        )  # fmt: skip


def rollback(repository: Path, template: Path = TEMPLATE_DIR) -> dict[str, Any]:
    """Pin the version published before the current one; returns its history entry."""
    with publishing(repository):
        history = read_history(repository)
        versions = [v["version"] for v in history["versions"]]
        if history["current"] not in versions or versions.index(history["current"]) == 0:
            raise PublishError(f"{repository}: no earlier published version to roll back to")
        previous = history["versions"][versions.index(history["current"]) - 1]
        options = ServingOptions(**previous["options"])
        render_configs(
            repository, template, previous["version"], previous["champion"]["genres"], options
        )
        history["current"] = previous["version"]
        atomic_write(repository / HISTORY_FILE, json.dumps(history, indent=2))
        entry: dict[str, Any] = previous
        return entry


@dataclass(frozen=True)
class RegisteredModels:
    """What the registry's aliases name, loaded: each model with its ``ModelRef``."""

    champion: tuple[ModelRef, Any]
    challenger: tuple[ModelRef, Any]
    reference: Any  # the champion's drift reference (a DataFrame of its columns)
    canary: tuple[ModelRef, Any] | None = None
    canary_share: float | None = None  # the share it was published with (its version's tag)


def load_registered_pair(target: Any, model_name: str) -> RegisteredModels:
    """The champion and challenger from the registry (and the canary, if one is on trial),
    with the champion's drift reference: the traffic it was retrained for when its run logged
    one (``drift_reference.parquet``), else its training sample.

    ``target`` is a ``genreops.training.tracking.TrackingTarget`` (MLflow is imported only here).
    """
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from genreops.training.tracking import (
        DRIFT_REFERENCE_FILE,
        REFERENCE_FILE,
        TAG_FAMILY,
        load_classifier,
    )

    target.activate()
    client = mlflow.MlflowClient()
    try:
        aliases = client.get_registered_model(model_name).aliases or {}
    except MlflowException:
        aliases = {}
    loaded: dict[str, tuple[ModelRef, Any]] = {}
    share = None
    for alias in ("champion", "challenger", "canary"):
        if alias not in aliases:
            if alias == "canary":
                continue
            raise PublishError(
                f"{model_name}@{alias} is not set in {target.tracking_uri} "
                "(run `genreops train` and `genreops register --top 2` first)"
            )
        version = client.get_model_version(model_name, str(aliases[alias]))
        if alias == "canary" and CANARY_SHARE_TAG in (version.tags or {}):
            share = float(version.tags[CANARY_SHARE_TAG])
        classifier = load_classifier(f"models:/{model_name}/{version.version}")
        run_id = version.run_id or ""
        run = client.get_run(run_id)
        ref = ModelRef.of(classifier, name=model_name, version=str(version.version), run_id=run_id)
        ref = replace(ref, family=run.data.tags.get(TAG_FAMILY, classifier.family))
        loaded[alias] = (ref, classifier)
    champion, challenger, canary = loaded["champion"], loaded["challenger"], loaded.get("canary")
    check_pair(champion[0], challenger[0], canary[0] if canary is not None else None)
    run_id = champion[0].run_id
    logged = {item.path for item in client.list_artifacts(run_id)}
    name = DRIFT_REFERENCE_FILE if DRIFT_REFERENCE_FILE in logged else REFERENCE_FILE
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=name)
    return RegisteredModels(champion, challenger, pd.read_parquet(local), canary, share)


def reload_server(server_url: str, repository: Path | None = None) -> None:
    """Have a running server (explicit model control) load the pinned versions, in order
    (``load_order`` of ``repository`` when given).

    Triton loads the new version next to the old one and switches when it is ready, so
    requests in flight finish on the old version and none fail during the swap.
    """
    from genreops.serving.triton.control import load_model

    for model in MODELS if repository is None else load_order(repository):
        load_model(server_url, model)


def load_order(repository: Path) -> tuple[str, ...]:
    """MODELS, except when the pinned version has no canary: then the predictor loads before
    the canary slot empties, for the predictor before it sends the canary its share until it
    is replaced (seen: "no model is published in this slot" while a canary was promoted)."""
    current = read_history(repository)["current"]
    canary_file = repository / "predictor" / str(current) / CANARY_FILE
    if current is None or not canary_file.is_file() or json.loads(canary_file.read_text()):
        return MODELS
    order = [m for m in MODELS if m != "canary"]
    order.insert(order.index("predictor") + 1, "canary")
    return tuple(order)


def replica_urls(server_url: str) -> list[str]:
    """The Triton HTTP URLs of a comma-separated list (several replicas on one repository)."""
    return list(dict.fromkeys(url.strip() for url in server_url.split(",") if url.strip()))


def reload_replicas(
    server_url: str, repository: Path, template: Path = TEMPLATE_DIR, *, restore: bool = True
) -> tuple[list[str], list[str]]:
    """Every replica of ``server_url`` (comma-separated) loads the pinned versions, all at
    once; returns the replicas that did and those that could not be reached.

    A replica that cannot be reached is passed over (when it starts it loads what the
    repository pins), unless none answers. A replica that refuses the new version has the
    repository pinned back to the version before it, and every replica loads that again, so
    all of them keep serving the same models; the PublishError says who refused and why.
    ``restore`` False (a rollback being loaded) raises the refusal as it is.
    """
    urls = replica_urls(server_url)
    outcomes = _reload_all(urls, repository)
    refusals = [error for error in outcomes.values() if isinstance(error, TritonModelError)]
    if refusals:
        if not restore:
            raise refusals[0]
        restored = _restore_previous(repository, template, urls)
        raise PublishError(f"{'; '.join(map(str, refusals))}; {restored}") from refusals[0]
    unreachable = [url for url, error in outcomes.items() if error is not None]
    for url in unreachable:
        log.warning("replica passed over: %s", outcomes[url])
    loaded = [url for url, error in outcomes.items() if error is None]
    if not loaded:
        raise TritonServerError(f"no Triton replica answers: {', '.join(unreachable)}")
    return loaded, unreachable


def _reload_all(urls: list[str], repository: Path) -> dict[str, TritonServerError | None]:
    """Every replica loads the pinned versions, all at once: None for each that did, else
    why not (refused: TritonModelError, or not reachable)."""

    def outcome(url: str) -> TritonServerError | None:
        try:
            reload_server(url, repository)
        except TritonServerError as error:
            return error
        return None

    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        return dict(zip(urls, pool.map(outcome, urls), strict=True))


def _restore_previous(repository: Path, template: Path, replicas: list[str]) -> str:
    """Pin the version before the current one and have every replica load it again; what was
    done, for the error message."""
    try:
        entry = rollback(repository, template)
    except PublishError as error:
        return f"nothing rolled back ({error})"
    outcomes = _reload_all(replicas, repository)
    failed = [f"{url}: {error}" for url, error in outcomes.items() if error is not None]
    done = f"the repository and every replica rolled back to version {entry['version']}"
    return done + (f", except {'; '.join(failed)}" if failed else "")


def publish_registered(
    target: Any,
    repository: Path,
    *,
    model_name: str,
    options: ServingOptions,
    server_url: str | None = None,
    template: Path = TEMPLATE_DIR,
) -> PublishResult:
    """Registry -> repository (new version if the pair changed) -> running server, if any."""
    with publishing(repository):  # the registry is read under the lock: no stale aliases
        return _publish_registered(target, repository, model_name, options, server_url, template)


def _publish_registered(
    target: Any,
    repository: Path,
    model_name: str,
    options: ServingOptions,
    server_url: str | None,
    template: Path,
) -> PublishResult:
    registered = load_registered_pair(target, model_name)
    if registered.canary_share is not None:  # whoever publishes, the canary keeps its share
        options = replace(options, canary_share=registered.canary_share)
    result = publish_pair(
        repository,
        champion=registered.champion,
        challenger=registered.challenger,
        reference=registered.reference,
        options=options,
        template=template,
        canary=registered.canary,
    )
    if server_url:
        loaded, result.unreachable = reload_replicas(server_url, repository, template)
        result.loaded = True
        result.server_url = ",".join(loaded)
    return result


def _home_server(settings: Settings) -> str | None:
    """GENREOPS_TRITON_CONTROL_URL, or the server this home runs (None: no server to load)."""
    from genreops.serving.triton.server import running_server_url

    return settings.triton_control_url or running_server_url(settings.home)


def publish_and_record(
    settings: Settings,
    repository: Path | None = None,
    *,
    model_name: str | None = None,
    server_url: str | None = None,
) -> PublishResult:
    """Publish the settings' registered pair and record a new version in the monitoring store.

    ``repository`` None: the setting's; ``model_name`` None: the setting's; ``server_url``
    (Triton HTTP URL) None: the server `genreops serve` or the stack runs for this home, if
    any. ``genreops publish`` and the ``publish`` flow both come here.
    """
    from genreops.training.tracking import TrackingTarget

    repository = (repository or settings.repository).resolve()
    with publishing(repository):  # recorded in the order they were published
        result = publish_registered(
            TrackingTarget.from_settings(settings),
            repository,
            model_name=model_name or settings.model_name,
            options=ServingOptions.from_settings(settings),
            server_url=server_url or _home_server(settings),
        )
        if result.created:
            record_event(
                settings.monitoring_db_url, settings.monitoring_spool_dir, "publish", result.entry
            )
    return result


@dataclass(frozen=True)
class RollbackResult:
    entry: dict[str, Any]  # the history entry of the version pinned again
    server_url: str | None  # the running server told to load it, if any


def rollback_and_record(
    settings: Settings, repository: Path | None = None, *, server_url: str | None = None
) -> RollbackResult:
    """Pin the previous version, reload the running server (``server_url``, default: this
    home's, if running) and record the rollback in the monitoring store."""
    repository = (repository or settings.repository).resolve()
    target = server_url or _home_server(settings)
    with publishing(repository):
        entry = rollback(repository)
        if target:
            reload_replicas(target, repository, restore=False)
        record_event(settings.monitoring_db_url, settings.monitoring_spool_dir, "rollback", entry)
    return RollbackResult(entry, target)


def _label(ref: dict[str, Any] | None) -> str | None:
    return f"{ref['name']}/{ref['version']}" if ref else None


def record_event(database_url: str, spool_dir: Path, event: str, entry: dict[str, Any]) -> None:
    """A publish/rollback in the monitoring store (spooled if the database is away)."""
    from genreops.monitoring.store import MonitoringWriter

    with MonitoringWriter(database_url, spool_dir) as writer:
        writer.submit_model_event(
            {
                "event": event,
                "repository_version": entry["version"],
                "champion": f"{entry['champion']['name']}/{entry['champion']['version']}",
                "challenger": f"{entry['challenger']['name']}/{entry['challenger']['version']}",
                "detail": {
                    "published_at": entry.get("published_at"),
                    "options": entry.get("options"),
                    "canary": _label(entry.get("canary")),
                },
            }
        )
