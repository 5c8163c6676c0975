"""Which version of the model is served: discovery, safe loading and hot swapping.

Mirrors TF Serving's file-system source with the default `latest` version policy and the
availability-preserving load policy:

* Versions are the integer-named sub-directories of the model base path (`<base>/<int>/`).
  Anything else (`.tmp-3`, `3.partial`, files) is ignored, so a pusher that writes to a
  temporary name and renames atomically is always safe.
* A version directory is only loaded once it is *complete* (the graph proto parses, its
  variable shards and assets are present) and *stable* (unchanged between two consecutive
  polls), so a version copied non-atomically is never loaded half-written.
* The newest loadable version is served. A new version is loaded in the background and
  swapped in only once it is ready (in-flight requests finish on the old one, which is then
  unloaded); a version that fails to load is reported in the model status (state END with
  the error) and skipped until its files change.

Unlike TF Serving, names are never turned into paths: the only paths read are the configured
base path and the integer directories listed in it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from collections.abc import Callable

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


class ModelManager:
    """Keeps the newest complete version of one model loaded.

    Args:
        model_name: the only model name served.
        base_path: directory holding the integer version directories.
        load_servable: (name, version, path) -> servable; raises on failure. The default
            loads a `serving.servable.Servable` and warms it up.
        poll_wait_seconds: seconds between polls of the base path; 0 polls once at start,
            a negative value disables polling (TF Serving's --file_system_poll_wait_seconds).
        version_labels: label -> version (TF Serving's `version_labels` in the model config).
        on_swap: called with (old, new) servables after each swap (e.g. to log or notify).
    """

    def __init__(
        self,
        model_name: str,
        base_path: str,
        load_servable: Callable[[str, int, str], object] | None = None,
        poll_wait_seconds: float = 1.0,
        version_labels: dict[str, int] | None = None,
        on_swap: Callable[[object | None, object | None], None] | None = None,
    ):
        if not model_name:
            raise ValueError("model_name must not be empty")
        self.model_name = model_name
        self.base_path = os.path.abspath(base_path)
        self._load_servable = load_servable or _load_and_warm_up
        self.poll_wait_seconds = poll_wait_seconds
        self.version_labels = dict(version_labels or {})
        self._on_swap = on_swap
        self._lock = threading.Lock()  # guards _current and _statuses
        self._poll_lock = threading.Lock()  # one poll at a time
        self._current = None
        self._statuses: dict[int, VersionStatus] = {}
        self._previous_fingerprints: dict[int, tuple] = {}
        self._failed_fingerprints: dict[int, tuple] = {}
        self._reported_incomplete: dict[int, tuple] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self, settle_seconds: float = 0.3) -> None:
        """Loads the newest complete version (blocking), then starts polling.

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
        if self._current is None:
            logger.warning(
                "No versions of servable %s found under base path %s",
                self.model_name,
                self.base_path,
            )
        if self.poll_wait_seconds > 0:
            self._thread = threading.Thread(
                target=self._poll_loop, name="version-poller", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

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

    def poll_once(self) -> None:
        """Scans the base path once and loads/swaps versions as needed."""
        with self._poll_lock:
            versions = self._list_versions()
            fingerprints = {v: _fingerprint(p) for v, p in versions.items()}
            stable = {
                v for v, fp in fingerprints.items() if self._previous_fingerprints.get(v) == fp
            }
            self._previous_fingerprints = fingerprints
            current = self._current
            for version in sorted(stable, reverse=True):
                if current is not None and version <= current.version:
                    break  # nothing newer than what is served is loadable
                if self._failed_fingerprints.get(version) == fingerprints[version]:
                    continue  # failed with exactly these files; retried once they change
                reason = _incomplete_reason(versions[version])
                if reason is not None:
                    if self._reported_incomplete.get(version) != fingerprints[version]:
                        self._reported_incomplete[version] = fingerprints[version]
                        logger.info("Ignoring incomplete version %s: %s", versions[version], reason)
                    continue
                if self._load(version, versions[version], fingerprints[version]):
                    return
            if current is not None and current.version not in versions:
                # The served version's directory is gone: serve the newest other one, or
                # nothing (TF Serving unloads versions that are no longer on disk).
                for version in sorted(stable, reverse=True):
                    if self._failed_fingerprints.get(version) != fingerprints[version] and (
                        _incomplete_reason(versions[version]) is None
                    ):
                        if self._load(version, versions[version], fingerprints[version]):
                            return
                logger.warning(
                    "Version %s of %s was removed; unloading it", current.version, self.model_name
                )
                self._swap(None)

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
        self._swap(servable)
        return True

    def _swap(self, servable) -> None:
        with self._lock:
            old, self._current = self._current, servable
            if servable is not None:
                self._statuses[servable.version] = VersionStatus(servable.version, STATE_AVAILABLE)
            if old is not None:
                self._statuses[old.version] = VersionStatus(old.version, STATE_END)
        if servable is not None:
            logger.info(
                "Successfully loaded servable version {name: %s version: %s}",
                self.model_name,
                servable.version,
            )
        if self._on_swap is not None:
            self._on_swap(old, servable)
        # `old` stays alive for requests still holding it and is freed after they finish.

    def _set_status(self, status: VersionStatus) -> None:
        with self._lock:
            self._statuses[status.version] = status

    # -- lookups -----------------------------------------------------------------------

    @property
    def current(self):
        """The servable now served (None before any version loaded)."""
        return self._current

    def wait_until_available(self, timeout: float) -> bool:
        """Polls until a version is served or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while self._current is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self._current is not None

    def _resolve_version(self, spec: ModelSpec) -> int | None:
        if spec.version_label is not None:
            if spec.version is not None:
                raise invalid_argument(
                    f"Both model version ({spec.version}) and model version label "
                    f"({spec.version_label}) cannot be supplied."
                )
            if spec.name != self.model_name or spec.version_label not in self.version_labels:
                raise invalid_argument(f"Unrecognized servable version label: {spec.version_label}")
            return self.version_labels[spec.version_label]
        return spec.version

    def servable_for(self, spec: ModelSpec):
        """The servable for a request, or TF Serving's NOT_FOUND / INVALID_ARGUMENT."""
        version = self._resolve_version(spec)
        servable = self._current
        if (
            spec.name != self.model_name
            or servable is None
            or (version is not None and servable.version != version)
        ):
            raise not_found(
                "Servable not found for request: "
                + dataclasses.replace(spec, version=version, version_label=None).describe()
            )
        return servable

    def statuses(self, spec: ModelSpec) -> list[VersionStatus]:
        """GetModelStatus: every version this server has seen, newest first."""
        version = self._resolve_version(spec)
        with self._lock:
            statuses = dict(self._statuses) if spec.name == self.model_name else {}
        if version is not None:
            if version not in statuses:
                raise not_found(f"Could not find version {version} of model {spec.name}")
            return [statuses[version]]
        if not statuses:
            raise not_found(f"Could not find any versions of model {spec.name}")
        return [statuses[v] for v in sorted(statuses, reverse=True)]


def _load_and_warm_up(model_name: str, version: int, path: str):
    from serving.servable import Servable

    servable = Servable(model_name, version, path)
    servable.warm_up()
    return servable
