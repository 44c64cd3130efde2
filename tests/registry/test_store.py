"""The model repository on disk: content-addressed, idempotent, immutable versions."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
import yaml

from service.errors import ConflictError, InvalidRequestError, NotFoundError
from service.registry.store import ModelStore, content_hash

from .toy import ROOT, expected_content_hash, manifest_dict


def toy_manifest(name: str = "toy", description: str = "toy") -> bytes:
    manifest = manifest_dict(name, "skops")
    manifest["description"] = description
    return yaml.safe_dump(manifest, sort_keys=False).encode()


def toy_files(artifact: bytes = b"artifact bytes") -> dict[str, bytes]:
    # The store checks names and hashes, never loads: any bytes will do here.
    return {
        "model.skops": artifact,
        "reference.csv": b"income,debt_ratio,housing\n10,0.5,rent\n",
        "evaluation.csv": b"income,debt_ratio,housing\n20,1.5,own\n",
    }


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    store = ModelStore(tmp_path / "models")
    store.scan()
    return store


def fresh(store: ModelStore) -> ModelStore:
    """Another process's view of the same folder."""
    other = ModelStore(store.root)
    other.scan()
    return other


def test_the_version_id_is_the_start_of_the_content_hash(store: ModelStore) -> None:
    manifest, files = toy_manifest(), toy_files()
    version, created = store.register(manifest, files, "cli")
    digest = expected_content_hash(manifest, files)
    assert created
    assert content_hash(manifest, files) == digest
    assert version.content_hash == digest
    assert version.version_id == digest[:16]
    assert len(version.version_id) == 16 and int(version.version_id, 16) >= 0
    assert version.path == store.root / "toy" / digest[:16]
    assert (version.path / "manifest.yaml").read_bytes() == manifest
    for name, data in files.items():
        assert (version.path / name).read_bytes() == data
    registration = json.loads((version.path / "registration.json").read_text())
    assert registration["content_hash"] == digest
    assert registration["source"] == "cli"
    assert registration["registered_at"] == version.registered_at
    assert version.source == "cli"


def test_the_hash_covers_names_lengths_and_every_byte() -> None:
    manifest, files = toy_manifest(), toy_files()
    digest = content_hash(manifest, files)
    assert content_hash(manifest, dict(reversed(list(files.items())))) == digest
    assert content_hash(manifest + b"\n", files) != digest
    assert content_hash(manifest, toy_files(b"artifact bytez")) != digest
    renamed = {("model2.skops" if k == "model.skops" else k): v for k, v in files.items()}
    assert content_hash(manifest, renamed) != digest
    # moving a byte from one file to the next changes the hash (lengths are hashed)
    shifted = dict(
        files, **{"model.skops": b"artifact byte", "reference.csv": b"s" + files["reference.csv"]}
    )
    assert content_hash(manifest, shifted) != digest


def test_the_demo_versions_are_named_by_their_content() -> None:
    for folder in (ROOT / "models").glob("*/*"):
        manifest = (folder / "manifest.yaml").read_bytes()
        parsed = yaml.safe_load(manifest)
        names = [parsed["artifact"]["path"], parsed["reference_data"]["path"]]
        names += [parsed["evaluation_data"]["path"]] if "evaluation_data" in parsed else []
        files = {n: (folder / n).read_bytes() for n in names}
        assert expected_content_hash(manifest, files)[:16] == folder.name


def test_registering_the_same_content_twice_is_idempotent(store: ModelStore) -> None:
    first, created = store.register(toy_manifest(), toy_files(), "cli")
    registration = (first.path / "registration.json").read_bytes()
    again, created_again = store.register(toy_manifest(), toy_files(), "http")
    assert (created, created_again) == (True, False)
    assert again.version_id == first.version_id
    assert again.source == "cli", "the first registration is kept"
    assert (first.path / "registration.json").read_bytes() == registration
    assert [p.name for p in (store.root / "toy").iterdir()] == [first.version_id]
    # a separate store (another process) agrees
    other = ModelStore(store.root)
    other.scan()
    _, created_elsewhere = other.register(toy_manifest(), toy_files(), "cli")
    assert not created_elsewhere
    assert [v.version_id for v in fresh(store).versions("toy")] == [first.version_id]


def test_latest_is_the_most_recently_registered(store: ModelStore) -> None:
    ids = []
    for artifact in (b"v1", b"v2", b"v3"):
        version, created = store.register(toy_manifest(), toy_files(artifact), "cli")
        assert created
        ids.append(version.version_id)
    assert len(set(ids)) == 3
    assert [v.version_id for v in store.versions("toy")] == ids
    assert store.get("toy").version_id == ids[-1]
    # registering an old version again does not make it the latest
    store.register(toy_manifest(), toy_files(b"v1"), "cli")
    assert store.get("toy").version_id == ids[-1]
    reread = fresh(store)
    assert [v.version_id for v in reread.versions("toy")] == ids
    assert reread.get("toy").version_id == ids[-1]
    # every version stays reachable by its id
    for version_id in ids:
        assert reread.get("toy", version_id).version_id == version_id


def test_a_version_is_found_by_a_unique_prefix(store: ModelStore) -> None:
    ids = [
        store.register(toy_manifest(), toy_files(b"v%d" % i), "cli")[0].version_id
        for i in range(17)
    ]
    # 17 ids over 16 hex digits: at least two share their first digit
    shared = next(d for d in "0123456789abcdef" if sum(i.startswith(d) for i in ids) > 1)
    with pytest.raises(NotFoundError, match="not found"):
        store.get("toy", shared)
    for version_id in ids:
        unique = next(
            version_id[:n]
            for n in range(1, 17)
            if sum(i.startswith(version_id[:n]) for i in ids) == 1
        )
        assert store.get("toy", unique).version_id == version_id
        assert store.get("toy", version_id).version_id == version_id
    with pytest.raises(NotFoundError):
        store.get("toy", "")


def test_unknown_models_and_versions_are_not_found(store: ModelStore) -> None:
    version, _ = store.register(toy_manifest(), toy_files(), "cli")
    with pytest.raises(NotFoundError, match="model 'nope' not found") as caught:
        store.get("nope")
    assert caught.value.status_code == 404
    with pytest.raises(NotFoundError):
        store.versions("nope")
    with pytest.raises(NotFoundError):
        store.get("nope", version.version_id)
    other = "0" * 16 if not version.version_id.startswith("0") else "f" * 16
    with pytest.raises(NotFoundError, match=f"version '{other}' of model 'toy' not found"):
        store.get("toy", other)
    with pytest.raises(NotFoundError):
        store.get("toy", version.version_id + "0")


def test_files_must_match_the_manifest(store: ModelStore) -> None:
    files = toy_files()
    del files["evaluation.csv"]
    with pytest.raises(ConflictError, match=r"missing \['evaluation.csv'\], extra \[\]"):
        store.register(toy_manifest(), files, "cli")
    with pytest.raises(ConflictError, match=r"extra \['notes.txt'\]"):
        store.register(toy_manifest(), {**toy_files(), "notes.txt": b"x"}, "cli")
    with pytest.raises(InvalidRequestError):
        store.register(b"name: [", toy_files(), "cli")
    assert not (store.root / "toy").exists() or not any((store.root / "toy").iterdir())
    assert store.names() == []


def test_a_version_registered_by_another_process_is_found_by_id(store: ModelStore) -> None:
    mine, _ = store.register(toy_manifest(), toy_files(b"mine"), "cli")
    theirs, _ = ModelStore(store.root).register(toy_manifest(), toy_files(b"theirs"), "http")
    # this store has not rescanned ...
    assert [v.version_id for v in store.versions("toy")] == [mine.version_id]
    # ... but a lookup by full id reads the new folder
    found = store.get("toy", theirs.version_id)
    assert (found.path, found.source) == (theirs.path, "http")
    assert [v.version_id for v in store.versions("toy")] == [mine.version_id, theirs.version_id]
    assert store.get("toy").version_id == theirs.version_id


def test_a_model_registered_by_another_process_is_found_by_name(store: ModelStore) -> None:
    theirs, _ = ModelStore(store.root).register(toy_manifest(), toy_files(), "http")
    assert store.names() == []  # not looked yet ...
    assert store.get("toy").path == theirs.path  # ... an unknown name makes the store look
    assert store.names() == ["toy"]
    assert store.get("toy", theirs.version_id[:6]).path == theirs.path


def test_refresh_takes_in_new_versions_and_drops_removed_ones(store: ModelStore) -> None:
    mine, _ = store.register(toy_manifest(), toy_files(b"mine"), "cli")
    assert store.refresh() is False  # nothing changed: only a listing
    other = ModelStore(store.root)
    theirs, _ = other.register(toy_manifest("other"), toy_files(b"theirs"), "cli")
    newer, _ = other.register(toy_manifest(), toy_files(b"newer"), "cli")
    assert store.refresh() is True
    assert store.names() == ["other", "toy"]
    assert store.get("toy").version_id == newer.version_id  # the latest is the newest
    shutil.rmtree(newer.path)
    assert store.refresh() is True
    assert store.get("toy").version_id == mine.version_id
    assert [v.version_id for v in store.versions("other")] == [theirs.version_id]


def test_refresh_reads_a_refused_folder_again_only_when_it_changes(
    store: ModelStore, caplog: pytest.LogCaptureFixture
) -> None:
    version, _ = store.register(toy_manifest(), toy_files(), "cli")
    copy = store.root / "toy" / ("0" * 16)
    shutil.copytree(version.path, copy)  # a folder whose name is not its content hash
    assert store.refresh() is False
    assert "does not match folder name" in store.problems[str(copy)]
    caplog.clear()
    for _ in range(3):
        assert store.refresh() is False
    assert "skipping model folder" not in caplog.text  # not read (nor logged) again
    shutil.rmtree(copy)
    store.refresh()
    assert store.problems == {}


@pytest.mark.parametrize(
    "target", ["model.skops", "reference.csv", "evaluation.csv", "manifest.yaml"]
)
def test_a_modified_version_is_skipped_with_a_problem(store: ModelStore, target: str) -> None:
    kept, _ = store.register(toy_manifest(), toy_files(b"kept"), "cli")
    changed, _ = store.register(toy_manifest(), toy_files(b"changed"), "cli")
    path = changed.path / target
    if target == "manifest.yaml":
        path.write_bytes(path.read_bytes().replace(b"description: toy", b"description: edited"))
    else:
        path.write_bytes(path.read_bytes() + b"\n")
    store.scan()
    assert [v.version_id for v in store.versions("toy")] == [kept.version_id]
    assert store.get("toy").version_id == kept.version_id
    assert list(store.problems) == [str(changed.path)]
    assert "does not match folder name" in store.problems[str(changed.path)]
    with pytest.raises(NotFoundError):
        store.get("toy", changed.version_id)


def test_a_version_missing_a_file_is_skipped(store: ModelStore) -> None:
    version, _ = store.register(toy_manifest(), toy_files(), "cli")
    (version.path / "reference.csv").unlink()
    store.scan()
    assert store.names() == []
    assert "reference.csv" in store.problems[str(version.path)]


def test_a_renamed_or_moved_version_is_skipped(store: ModelStore) -> None:
    version, _ = store.register(toy_manifest(), toy_files(), "cli")
    renamed = version.path.with_name("0123456789abcdef")
    version.path.rename(renamed)
    store.scan()
    assert store.names() == []
    assert "does not match folder name" in store.problems[str(renamed)]
    moved = store.root / "other" / version.version_id
    moved.parent.mkdir()
    renamed.rename(moved)
    store.scan()
    assert store.names() == []
    assert "manifest name 'toy' does not match folder" in store.problems[str(moved)]


def test_staging_folders_and_stray_files_are_ignored(store: ModelStore) -> None:
    version, _ = store.register(toy_manifest(), toy_files(), "cli")
    (store.root / "toy" / ".staging-abc").mkdir()
    (store.root / "toy" / "README").write_text("hello")
    (store.root / ".incoming" / "0123").mkdir(parents=True)
    (store.root / "notes.txt").write_text("hi")
    store.scan()
    assert store.names() == ["toy"]
    assert [v.version_id for v in store.versions("toy")] == [version.version_id]
    assert store.problems == {}


def test_a_version_without_registration_record_is_still_valid(store: ModelStore) -> None:
    version, _ = store.register(toy_manifest(), toy_files(), "http")
    (version.path / "registration.json").unlink()
    reread = fresh(store).get("toy")
    assert reread.version_id == version.version_id
    assert (reread.registered_at, reread.source) == ("1970-01-01T00:00:00Z", "local")


def test_no_staging_folder_is_left_behind(store: ModelStore) -> None:
    store.register(toy_manifest(), toy_files(), "cli")
    store.register(toy_manifest(), toy_files(), "cli")
    assert sorted(p.name for p in (store.root / "toy").iterdir()) == [store.get("toy").version_id]


def test_a_copy_of_the_demo_repository_scans_clean(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "models", tmp_path / "models")
    store = ModelStore(tmp_path / "models")
    store.scan()
    assert store.names() == ["german-credit", "german-credit-logit"]
    assert store.problems == {}
    for name in store.names():
        (version,) = store.versions(name)
        assert version.manifest.name == name
        assert version.source == "cli"


def test_a_missing_repository_is_empty(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "absent")
    store.scan()
    assert store.names() == [] and store.problems == {}


def test_a_version_id_cannot_reach_another_models_folder(store: ModelStore) -> None:
    mine, _ = store.register(toy_manifest("mine"), toy_files(b"mine"), "cli")
    theirs, _ = store.register(toy_manifest("theirs"), toy_files(b"theirs"), "cli")
    assert store.get("mine").version_id == mine.version_id
    for probe in (f"../theirs/{theirs.version_id}", str(theirs.path)):
        with pytest.raises(NotFoundError):
            store.get("mine", probe)
    assert [v.version_id for v in store.versions("mine")] == [mine.version_id]
    assert store.get("mine").manifest.name == "mine"


def test_concurrent_registrations_of_the_same_content_both_succeed(tmp_path: Path) -> None:
    failures = []
    for attempt in range(12):
        root = tmp_path / f"models{attempt}"
        files = toy_files(os.urandom(1 << 20))
        barrier = threading.Barrier(2)
        outcomes: list[object] = []

        def register(
            root: Path = root,
            files: dict[str, bytes] = files,
            barrier: threading.Barrier = barrier,
            outcomes: list[object] = outcomes,
        ) -> None:
            store = ModelStore(root)
            barrier.wait()
            try:
                outcomes.append(store.register(toy_manifest(), files, "http")[1])
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                outcomes.append(exc)

        threads = [threading.Thread(target=register) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if sorted(map(str, outcomes)) != ["False", "True"]:
            failures.append(outcomes)
    assert failures == []
