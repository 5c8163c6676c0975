"""Which versions of which models are served: discovery, safe loading and hot swapping.

Mirrors TF Serving's file-system source, its version policies and the availability-preserving
load policy:

* Versions are the integer-named sub-directories of a model's base path (`<base>/<int>/`).
  Anything else (`.tmp-3`, `3.partial`, files) is ignored, so a pusher that writes to a
  temporary name and renames atomically is always safe.
* A version directory is only loaded once it is *complete* (the graph proto parses, its
  variable shards and assets are present) and *stable* (unchanged between two consecutive
  polls), so a version copied non-atomically is never loaded half-written.
* The model's version policy picks the versions to serve among the loadable ones: the newest
  (default), the newest N, all, or specific ones (`model_version_policy` in a
  ModelServerConfig). A new version is loaded in the background and an old one unloaded only
  once a version to serve instead is ready (in-flight requests finish on the old one); a
  version that fails to load is reported in the model status (state END with the error) and
  skipped until its files change.
* `ServerCore` holds every model of a ModelServerConfig and its version labels, and
  switches to a new config (a re-read `--model_config_file`) without a restart.

Unlike TF Serving, names are never turned into paths: the only paths read are the configured
base paths and the integer directories listed in them.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable

from serving.errors import Code, ServingError, invalid_argument, not_found
from serving.saved_model_files import incomplete_reason

logger = logging.getLogger(__name__)

_VERSION_DIR = re.compile(r"[0-9]{1,18}")

# ModelVersionStatus.State (get_model_status.proto).
STATE_START, STATE_LOADING, STATE_AVAILABLE, STATE_UNLOADING, STATE_END = 10, 20, 30, 40, 50


@dataclasses.dataclass
class VersionStatus:
    version: int
    state: int
    error_code: Code = Code.OK
    error_message: str = ""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Which servable a request asks for (TF Serving's ModelSpec, minus the proto)."""

    name: str
    version: int | None = None
    version_label: str | None = None
    signature_name: str = ""

    def describe(self) -> str:
        """TF Serving's ServableRequest debug string, used in NOT_FOUND messages."""
        if self.version is None:
            return f"Latest({self.name})"
        return f"Specific({self.name}, {self.version})"


def _incomplete_reason(path: str) -> str | None:
    """`incomplete_reason`, but a version whose files cannot even be read is incomplete too:
    one unreadable version must not abort the poll (or the start-up) for all the others."""
    try:
        return incomplete_reason(path)
    except Exception as e:  # noqa: BLE001  (anything unreadable: a version being copied)
        return f"cannot read {path}: {type(e).__name__}: {e}"


def _fingerprint(path: str) -> tuple:
    """Every file under `path` with its size and mtime: changes while a copy is running."""
    entries = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue  # removed meanwhile: the next poll sees a different fingerprint
            entries.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


VersionPolicy = Callable[[Iterable[int]], set[int]]


def latest_version(versions: Iterable[int]) -> set[int]:
    """TF Serving's default version policy: serve the newest version only."""
    versions = list(versions)
    return {max(versions)} if versions else set()


class ModelManager:
    """Keeps the versions of one model that its version policy asks for loaded.

    Args:
        model_name: the model's name.
        base_path: directory holding the integer version directories.
        load_servable: (name, version, path) -> servable; raises on failure. The default
            loads a `serving.servable.Servable` and warms it up.
        poll_wait_seconds: seconds between polls of the base path; 0 polls once at start,
            a negative value disables polling (TF Serving's --file_system_poll_wait_seconds).
        version_policy: loadable versions -> versions to serve (default: the newest;
            `server_config.versions_to_serve` applies a config's latest N / all / specific).
    """

    def __init__(
        self,
        model_name: str,
        base_path: str,
        load_servable: Callable[[str, int, str], object] | None = None,
        poll_wait_seconds: float = 1.0,
        version_policy: VersionPolicy | None = None,
    ):
        if not model_name:
            raise ValueError("model_name must not be empty")
        self.model_name = model_name
        self.base_path = os.path.abspath(base_path)
        self._load_servable = load_servable or load_and_warm_up
        self.poll_wait_seconds = poll_wait_seconds
        self.version_policy: VersionPolicy = version_policy or latest_version
        self._lock = threading.Lock()  # guards _loaded and _statuses
        self._poll_lock = threading.Lock()  # one poll at a time
        self._loaded: dict[int, object] = {}
        self._statuses: dict[int, VersionStatus] = {}
        self._previous_fingerprints: dict[int, tuple] = {}
        self._failed_fingerprints: dict[int, tuple] = {}
        self._complete_fingerprints: dict[int, tuple] = {}
        self._reported_incomplete: dict[int, tuple] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self, settle_seconds: float = 0.3) -> None:
        """Loads the versions to serve (blocking), then starts polling.

        The first two scans are `settle_seconds` apart so that the stability check also
        applies to versions being written while the server starts.
        """
        if not os.path.isdir(self.base_path):
            logger.warning(
                "Model base path %s does not exist (yet); polling for it", self.base_path
            )
        self.poll_once()
        self._stop.wait(settle_seconds)
        self.poll_once()
        if not self._loaded:
            logger.warning(
                "No versions of servable %s found under base path %s",
                self.model_name,
                self.base_path,
            )
        if self.poll_wait_seconds > 0:
            self._thread = threading.Thread(
                target=self._poll_loop, name=f"version-poller-{self.model_name}", daemon=True
            )
            self._thread.start()

    def stop(self, unload: bool = False) -> None:
        """Stops polling; `unload` also unloads every version (a model removed from the
        config: TF Serving unloads it and reports its versions as END)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=60)
        if unload:
            with self._poll_lock:
                for version in sorted(self._loaded):
                    self._unload(version)

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_wait_seconds):
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001  (the poller must survive anything on disk)
                logger.exception("Polling %s failed", self.base_path)

    # -- discovery and loading ---------------------------------------------------------

    def _list_versions(self) -> dict[int, str]:
        try:
            names = os.listdir(self.base_path)
        except OSError:
            return {}
        versions: dict[int, str] = {}
        for name in sorted(names):
            path = os.path.join(self.base_path, name)
            if _VERSION_DIR.fullmatch(name) and os.path.isdir(path) and not os.path.islink(path):
                versions.setdefault(int(name), path)
        return versions

    def _complete(self, version: int, path: str, fingerprint: tuple) -> bool:
        """Whether a version's files are all there; remembered per fingerprint, since
        reading the graph proto of every version on every poll would be costly."""
        if self._complete_fingerprints.get(version) == fingerprint:
            return True
        reason = _incomplete_reason(path)
        if reason is None:
            self._complete_fingerprints[version] = fingerprint
            return True
        if self._reported_incomplete.get(version) != fingerprint:
            self._reported_incomplete[version] = fingerprint
            logger.info("Ignoring incomplete version %s: %s", path, reason)
        return False

    def poll_once(self) -> None:
        """Scans the base path once, loads the versions the policy asks for and unloads
        the others (availability-preserving, as TF Serving's default: a version is only
        unloaded once one it should serve instead is available, or its directory is gone).
        """
        with self._poll_lock:
            versions = self._list_versions()
            fingerprints = {v: _fingerprint(p) for v, p in versions.items()}
            stable = {
                v for v, fp in fingerprints.items() if self._previous_fingerprints.get(v) == fp
            }
            self._previous_fingerprints = fingerprints
            while True:
                # Loaded versions still on disk stay candidates even while their files are
                # touched, so that a `touch` never makes the server drop a version.
                candidates = [
                    v
                    for v in versions
                    if v in self._loaded
                    or (
                        v in stable
                        and self._failed_fingerprints.get(v) != fingerprints[v]
                        and self._complete(v, versions[v], fingerprints[v])
                    )
                ]
                aspired = set(self.version_policy(candidates))
                to_load = sorted(aspired - self._loaded.keys(), reverse=True)
                if not to_load:
                    break
                # A failed load is excluded from the candidates next time round, so a
                # latest-N policy falls back to the next older version (TF Serving keeps
                # the old one serving when a new one fails).
                for version in to_load:
                    self._load(version, versions[version], fingerprints[version])
            any_aspired_available = bool(aspired & self._loaded.keys())
            for version in sorted(self._loaded):
                if version in aspired:
                    continue
                if version not in versions:
                    logger.warning(
                        "Version %s of %s was removed; unloading it", version, self.model_name
                    )
                    self._unload(version)
                elif any_aspired_available:
                    self._unload(version)

    def _load(self, version: int, path: str, fingerprint: tuple) -> bool:
        self._set_status(VersionStatus(version, STATE_LOADING))
        logger.info(
            "Loading servable: {name: %s version: %s} from %s", self.model_name, version, path
        )
        try:
            servable = self._load_servable(self.model_name, version, path)
        except Exception as e:  # noqa: BLE001  (a broken version must not stop the server)
            self._failed_fingerprints[version] = fingerprint
            code = (
                e.code
                if isinstance(e, ServingError)
                else Code(getattr(e, "error_code", Code.UNKNOWN))
            )
            message = (
                f"Loading servable: {{name: {self.model_name} version: {version}}} failed: {e}"
            )
            logger.error("%s", message)
            self._set_status(VersionStatus(version, STATE_END, code, message))
            return False
        self._failed_fingerprints.pop(version, None)
        with self._lock:
            self._loaded[version] = servable
            self._statuses[version] = VersionStatus(version, STATE_AVAILABLE)
        logger.info(
            "Successfully loaded servable version {name: %s version: %s}",
            self.model_name,
            version,
        )
        return True

    def _unload(self, version: int) -> None:
        with self._lock:
            self._loaded.pop(version, None)
            self._statuses[version] = VersionStatus(version, STATE_END)
        logger.info("Unloaded servable version {name: %s version: %s}", self.model_name, version)
        # The servable stays alive for requests still holding it and is freed after them.

    def _set_status(self, status: VersionStatus) -> None:
        with self._lock:
            self._statuses[status.version] = status

    # -- lookups -----------------------------------------------------------------------

    @property
    def current(self):
        """The newest loaded servable (what a request without a version gets), or None."""
        with self._lock:
            return self._loaded[max(self._loaded)] if self._loaded else None

    @property
    def loaded_versions(self) -> list[int]:
        with self._lock:
            return sorted(self._loaded)

    def wait_until_available(self, timeout: float) -> bool:
        """Polls until a version is served or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while self.current is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.current is not None

    def servable(self, version: int | None):
        """The loaded servable for `version` (None: the newest), or None."""
        with self._lock:
            if version is None:
                return self._loaded[max(self._loaded)] if self._loaded else None
            return self._loaded.get(version)

    def version_statuses(self) -> dict[int, VersionStatus]:
        with self._lock:
            return dict(self._statuses)


class ServerCore:
    """Every configured model, with version labels: TF Serving's ServerCore, minus the
    platforms the built-in server does not have.

    `reload(config)` switches to a new ModelServerConfig as TF Serving's
    `HandleReloadConfigRequest` / config-file poll does: models added are loaded (blocking),
    models removed are unloaded, a changed version policy or base path applies at once.
    Version labels are checked first, against the versions available *before* the new
    config loads anything (server_core.cc ReloadConfig -> UpdateModelVersionLabelMap): a
    label naming a version not available is FAILED_PRECONDITION, and nothing changes (TF
    Serving keeps the old labels too). So labels in the config a server starts with need
    `allow_version_labels_for_unavailable_models` (which allows labels not yet assigned to
    another version), and moving a label to a new version takes two configs, as
    serving_config.md describes: first the version, then the label.
    """

    def __init__(
        self,
        config,
        load_servable: Callable[[str, int, str], object] | None = None,
        file_system_poll_wait_seconds: float = 1.0,
        allow_version_labels_for_unavailable_models: bool = False,
    ):
        from serving import server_config

        server_config.validate(config)
        self._load_servable = load_servable
        self.poll_wait_seconds = file_system_poll_wait_seconds
        self.allow_version_labels_for_unavailable_models = (
            allow_version_labels_for_unavailable_models
        )
        self._config = config
        self._lock = threading.Lock()  # guards _managers and _labels
        self._reload_lock = threading.Lock()
        self._managers: dict[str, ModelManager] = {}
        # Models no longer configured: their versions' last states stay reported (END), as
        # TF Serving's ServableStateMonitor keeps them.
        self._retired: dict[str, ModelManager] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._started = False

    # -- configuration -----------------------------------------------------------------

    def _manager(self, model) -> ModelManager:
        from serving.server_config import versions_to_serve

        return ModelManager(
            model.name,
            model.base_path,
            load_servable=self._load_servable,
            poll_wait_seconds=self.poll_wait_seconds,
            version_policy=functools.partial(versions_to_serve, _copy(model)),
        )

    def start(self) -> None:
        """Loads every configured model (blocking); FAILED_PRECONDITION if a version label
        names a version that is not available (TF Serving then does not start)."""
        self._started = True
        self.reload(self._config)

    def reload(self, config) -> None:
        from serving import server_config

        server_config.validate(config)
        with self._reload_lock:
            models = {model.name: model for model in config.model_config_list.config}
            old = {model.name: model for model in self._config.model_config_list.config}
            with self._lock:
                managers = dict(self._managers)
            labels = self._new_labels(models, managers)
            with self._lock:
                self._labels = labels
            for name in list(managers):
                if name not in models or models[name].base_path != old[name].base_path:
                    logger.info("Unloading model %s (no longer in the config as before)", name)
                    retired = managers.pop(name)
                    retired.stop(unload=True)
                    with self._lock:
                        self._retired[name] = retired
            for name, model in models.items():
                if name in managers:
                    from serving.server_config import versions_to_serve

                    managers[name].version_policy = functools.partial(
                        versions_to_serve, _copy(model)
                    )
                    managers[name].poll_once()
                else:
                    managers[name] = self._manager(model)
                    managers[name].start()
            with self._lock:
                self._managers = managers
                self._config = _copy(config)

    def _new_labels(self, models, managers) -> dict[str, dict[str, int]]:
        """server_core.cc UpdateModelVersionLabelMap, against the versions loaded now."""
        new: dict[str, dict[str, int]] = {}
        for name, model in models.items():
            loaded = set(managers[name].loaded_versions) if name in managers else set()
            for label, version in model.version_labels.items():
                allowed = version in loaded
                if not allowed and self.allow_version_labels_for_unavailable_models:
                    # Only a label not yet pointing at another version may be assigned early.
                    existing = self._labels.get(name, {}).get(label)
                    allowed = existing is None or existing == version
                if not allowed:
                    raise ServingError(
                        Code.FAILED_PRECONDITION,
                        f"Request to assign label to version {version} of model {name}, "
                        "which is not currently available for inference",
                    )
                new.setdefault(name, {})[label] = version
        return new

    @property
    def config(self):
        with self._lock:
            return _copy(self._config)

    @property
    def managers(self) -> dict[str, ModelManager]:
        with self._lock:
            return dict(self._managers)

    def stop(self) -> None:
        for manager in self.managers.values():
            manager.stop()

    # -- requests ----------------------------------------------------------------------

    def _resolve_version(self, spec: ModelSpec) -> int | None:
        if spec.version_label is not None:
            if spec.version is not None:
                raise invalid_argument(
                    f"Both model version ({spec.version}) and model version label "
                    f"({spec.version_label}) cannot be supplied."
                )
            with self._lock:
                version = self._labels.get(spec.name, {}).get(spec.version_label)
            if version is None:
                raise invalid_argument(f"Unrecognized servable version label: {spec.version_label}")
            return version
        return spec.version

    def servable_for(self, spec: ModelSpec):
        """The servable for a request, or TF Serving's INVALID_ARGUMENT / NOT_FOUND
        (server_core.cc ServableRequestFromModelSpec, then the manager's lookup)."""
        if not spec.name:
            raise invalid_argument("ModelSpec has no name specified.")
        version = self._resolve_version(spec)
        manager = self.managers.get(spec.name)
        servable = manager.servable(version) if manager is not None else None
        if servable is None:
            raise not_found(
                "Servable not found for request: "
                + dataclasses.replace(spec, version=version, version_label=None).describe()
            )
        return servable

    def statuses(self, spec: ModelSpec) -> list[VersionStatus]:
        """GetModelStatus (get_model_status_impl.cc): one version if the spec names a
        version, else every version seen, newest first. A version *label* is not looked up
        there (only `has_version()` is checked), so any label answers all versions."""
        with self._lock:
            managers = [self._retired.get(spec.name), self._managers.get(spec.name)]
        statuses = {}
        for manager in managers:
            if manager is not None:
                statuses.update(manager.version_statuses())
        if spec.version is not None:
            if spec.version not in statuses:
                raise not_found(f"Could not find version {spec.version} of model {spec.name}")
            return [statuses[spec.version]]
        if not statuses:
            raise not_found(f"Could not find any versions of model {spec.name}")
        return [statuses[v] for v in sorted(statuses, reverse=True)]


def _copy(message):
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def load_and_warm_up(model_name: str, version: int, path: str, enable_warmup: bool = True,
                     warmup_iterations: int = 1):
    """Loads a `serving.servable.Servable` and, with `enable_warmup` (TF Serving's
    --enable_model_warmup), replays its warm-up requests `warmup_iterations` times
    (--num_request_iterations_for_warmup) before it serves; a failed warm-up fails the load.
    """
    from serving.servable import Servable

    servable = Servable(model_name, version, path)
    if enable_warmup:
        try:
            servable.warm_up(warmup_iterations)
        except Exception:
            servable.close()
            raise
    return servable
