"""The atomic pusher on real SavedModels: versions, unchanged re-runs, failed copies, Do().

A model server polls `<base>/` and loads any integer-named directory, so a push must never
leave a digit-named directory that is not a complete copy. The copies that fail are real
copies: either the disk "fills up" after N files (`shutil.copyfile` raises ENOSPC once N
files were really written), or the source holds an entry that cannot be copied (a dangling
symlink, a named pipe), so `shutil.copytree` writes every other file and then raises.
"""

from __future__ import annotations

import errno
import json
import os
import shutil

import pytest
import tensorflow as tf
from tfx.types import standard_artifacts, standard_component_specs

from components.atomic_pusher import executor
from components.atomic_pusher.executor import (
    ALREADY_SERVED_KEY,
    directory_digest,
    next_version,
    push_atomically,
)


def save_model(path: str, value: float) -> str:
    """A real (tiny) SavedModel whose served function returns `value`."""
    module = tf.Module()
    module.value = tf.Variable(value)
    module.serve = tf.function(lambda: module.value * 1.0, input_signature=[])
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def served_value(path: str) -> float:
    return float(tf.saved_model.load(path).value.numpy())


def versions(base: str) -> list[str]:
    return sorted((name for name in os.listdir(base) if name.isdigit()), key=int)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("models")
    return {name: save_model(str(root / name), value)
            for name, value in (("a", 1.0), ("b", 2.0))}


def broken_copy(model: str, directory: str, kind: str) -> str:
    """A copy of `model` plus an entry `shutil.copytree` cannot copy (a dangling symlink or
    a named pipe): copytree copies every other file, then raises."""
    copy = os.path.join(directory, "model")
    shutil.copytree(model, copy)
    bad = os.path.join(copy, "variables", "zz_bad")
    if kind == "dangling_symlink":
        os.symlink(os.path.join(copy, "no_such_file"), bad)
    else:
        os.mkfifo(bad)  # copying a named pipe raises SpecialFileError (even for root)
    return copy


@pytest.fixture
def disk_full_after(monkeypatch):
    """Makes the real copy fail like a full disk once `n` files have been copied.

    `shutil.copy2` (copytree's copy function) looks `copyfile` up at call time; the first
    `n` files are really copied, every later one raises ENOSPC.
    """

    real_copyfile = shutil.copyfile

    def arm(n: int) -> list[str]:
        copied: list[str] = []

        def copyfile(src, dst, *args, **kwargs):
            if len(copied) >= n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), dst)
            copied.append(real_copyfile(src, dst, *args, **kwargs))
            return copied[-1]

        monkeypatch.setattr(shutil, "copyfile", copyfile)
        return copied

    yield arm
    monkeypatch.undo()


# --- push_atomically ------------------------------------------------------------------------


def test_push_creates_a_complete_version_and_versions_increase(tmp_path, models):
    base = str(tmp_path / "serving" / "m")  # created by the push
    first, first_version, is_new = push_atomically(models["a"], base)
    assert is_new and first == os.path.join(base, first_version)
    assert os.listdir(base) == [first_version]
    assert os.path.isfile(os.path.join(first, "saved_model.pb"))
    assert os.path.isdir(os.path.join(first, "variables"))
    assert directory_digest(first) == directory_digest(models["a"])
    assert served_value(first) == 1.0

    # Pushed within the same second: still a newer version, the old one untouched.
    second, second_version, is_new = push_atomically(models["b"], base)
    assert is_new and int(second_version) > int(first_version)
    assert versions(base) == [first_version, second_version]
    assert sorted(os.listdir(base)) == sorted(versions(base))  # nothing hidden left either
    assert served_value(second) == 2.0
    assert directory_digest(first) == directory_digest(models["a"])

    # A model that is not the newest one is pushed again, as a newer version (a roll-back).
    third, third_version, is_new = push_atomically(models["a"], base)
    assert is_new and int(third_version) > int(second_version)
    assert served_value(third) == 1.0


def test_identical_model_is_not_pushed_again(tmp_path, models):
    base = str(tmp_path / "m")
    destination, version, is_new = push_atomically(models["a"], base)
    assert is_new
    mtime = os.stat(os.path.join(destination, "saved_model.pb")).st_mtime_ns
    again = push_atomically(models["a"], base)
    assert again == (destination, version, False)
    assert os.listdir(base) == [version]
    assert os.stat(os.path.join(destination, "saved_model.pb")).st_mtime_ns == mtime


def test_next_version_is_newer_than_every_version_even_with_a_slow_clock(tmp_path):
    for name in ("100", "7", ".900.incomplete", "notes", "12a"):
        (tmp_path / name).mkdir()
    assert next_version(str(tmp_path), now=50) == 101
    assert next_version(str(tmp_path), now=5000) == 5000
    assert next_version(str(tmp_path / "7"), now=3) == 3  # empty base: the clock


def assert_only_served(base: str, served: list[str]) -> None:
    """What a model server polling `base` sees: only `served`, and no partial copy."""
    assert versions(base) == served
    leftovers = sorted(set(os.listdir(base)) - set(served))
    # Anything left would at least have to be hidden from the server (not an integer)...
    assert all(name.startswith(".") for name in leftovers), leftovers
    # ...but the pusher removes its staging copy when the copy fails.
    assert leftovers == []


@pytest.mark.parametrize("files_before_failure", [0, 1, 2])
def test_copy_failing_midway_leaves_the_served_versions_alone(
    tmp_path, models, disk_full_after, files_before_failure
):
    base = str(tmp_path / "m")
    _, served, _ = push_atomically(models["a"], base)
    copied = disk_full_after(files_before_failure)
    with pytest.raises(OSError, match="No space left on device"):
        push_atomically(models["b"], base)
    assert len(copied) == files_before_failure  # the failure really came midway
    assert all(path.startswith(base + os.sep) for path in copied)  # written under the base
    assert_only_served(base, [served])
    assert served_value(os.path.join(base, served)) == 1.0
    assert directory_digest(os.path.join(base, served)) == directory_digest(models["a"])


@pytest.mark.parametrize("kind", ["dangling_symlink", "fifo"])
def test_uncopyable_source_leaves_nothing(tmp_path, models, kind):
    base = str(tmp_path / "m")
    source = broken_copy(models["a"], str(tmp_path), kind)
    with pytest.raises(OSError):  # shutil.Error is an OSError
        push_atomically(source, base)
    assert_only_served(base, [])


@pytest.mark.timeout(60)  # the digest used to open the named pipe and wait forever
@pytest.mark.parametrize("kind", ["dangling_symlink", "fifo"])
def test_uncopyable_source_next_to_a_served_version_fails_cleanly(tmp_path, models, kind):
    base = str(tmp_path / "m")
    _, served, _ = push_atomically(models["a"], base)
    source = broken_copy(models["b"], str(tmp_path), kind)
    with pytest.raises(OSError):
        push_atomically(source, base)
    assert_only_served(base, [served])


def test_retry_after_a_failed_copy_pushes_exactly_once(tmp_path, models, disk_full_after):
    base = str(tmp_path / "m")
    _, served, _ = push_atomically(models["a"], base)
    disk_full_after(1)
    for _ in range(2):  # fails the same way each time, never leaving a version
        with pytest.raises(OSError):
            push_atomically(models["b"], base)
        assert_only_served(base, [served])

    disk_full_after(10**6)  # space again: the retry succeeds, once
    destination, version, is_new = push_atomically(models["b"], base)
    assert is_new and int(version) > int(served)
    assert_only_served(base, [served, version])
    assert directory_digest(destination) == directory_digest(models["b"])
    assert served_value(destination) == 2.0
    assert push_atomically(models["b"], base) == (destination, version, False)
    assert_only_served(base, [served, version])


# --- Executor.Do with real TFX artifacts ----------------------------------------------------


def run_pusher(tmp_path, model_dir: str, blessed: bool, base: str, name: str):
    model = standard_artifacts.Model()
    model.uri = model_dir
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / f"blessing_{name}")
    blessing.set_int_custom_property("blessed", int(blessed))
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / f"pushed_{name}")
    os.makedirs(pushed.uri)
    exec_properties = {
        standard_component_specs.PUSH_DESTINATION_KEY: json.dumps(
            {"filesystem": {"base_directory": base}}
        )
    }
    executor.Executor().Do(
        {
            standard_component_specs.MODEL_KEY: [model],
            standard_component_specs.MODEL_BLESSING_KEY: [blessing],
        },
        {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
        exec_properties,
    )
    return pushed


@pytest.fixture(scope="module")
def trainer_output(tmp_path_factory, models) -> str:
    """A Trainer-style Model artifact directory: the SavedModel under Format-Serving/."""
    uri = str(tmp_path_factory.mktemp("trainer") / "model")
    shutil.copytree(models["a"], os.path.join(uri, "Format-Serving"))
    return uri


def test_executor_pushes_a_blessed_model_once(tmp_path, trainer_output, models):
    base = str(tmp_path / "serving" / "m")
    pushed = run_pusher(tmp_path, trainer_output, True, base, "first")
    assert pushed.get_int_custom_property("pushed") == 1
    version = pushed.get_string_custom_property("pushed_version")
    destination = pushed.get_string_custom_property("pushed_destination")
    assert os.listdir(base) == [version] and destination == os.path.join(base, version)
    assert directory_digest(destination) == directory_digest(models["a"])
    assert served_value(destination) == 1.0
    assert pushed.get_int_custom_property(ALREADY_SERVED_KEY) == 0
    assert directory_digest(pushed.uri) == directory_digest(models["a"])  # TFX's archive copy

    # An unchanged re-run: marked pushed (the model is served), nothing new under the base.
    again = run_pusher(tmp_path, trainer_output, True, base, "again")
    assert again.get_int_custom_property("pushed") == 1
    assert again.get_string_custom_property("pushed_version") == version
    assert again.get_int_custom_property(ALREADY_SERVED_KEY) == 1
    assert os.listdir(base) == [version]


def test_executor_does_not_push_an_unblessed_model(tmp_path, trainer_output):
    base = str(tmp_path / "serving" / "m")
    os.makedirs(base)
    pushed = run_pusher(tmp_path, trainer_output, False, base, "rejected")
    assert pushed.get_int_custom_property("pushed") == 0
    assert os.listdir(base) == []
    assert os.listdir(pushed.uri) == []
