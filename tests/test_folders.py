"""The staging folder that export, to-ort and report build a new version in."""

import errno
import os
import tempfile

import pytest

from fmnist_edge import folders
from fmnist_edge.errors import FmnistEdgeError


@pytest.fixture
def closed_parent(monkeypatch):
    """A parent folder that refuses new entries, as a read-only one does to a non-root user
    (root, which CI runs as, writes anywhere, so the refusal is injected)."""
    real = tempfile.mkdtemp
    closed = []

    def mkdtemp(suffix=None, prefix=None, dir=None):
        if dir is not None and any(os.path.samefile(dir, c) for c in closed):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(suffix, prefix, dir)

    monkeypatch.setattr(folders.tempfile, "mkdtemp", mkdtemp)
    return closed


def test_a_staging_folder_is_made_beside_the_target_and_cleans_what_a_kill_left(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (tmp_path / f"{folders.STAGING_PREFIX}out-killed00").mkdir()
    staging = folders.make_staging(target)
    assert staging.parent == tmp_path and staging.name.startswith(f"{folders.STAGING_PREFIX}out-")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(folders.STAGING_PREFIX)] == [staging.name]


def test_a_read_only_parent_is_named_in_the_error_not_the_writable_target(tmp_path, closed_parent):
    target = tmp_path / "out"
    target.mkdir()
    closed_parent.append(tmp_path)
    with pytest.raises(FmnistEdgeError) as err:
        folders.make_staging(target)
    assert str(err.value).startswith(f"cannot write to {tmp_path} (the new out is built there first)")
    assert "Permission denied" in str(err.value)


def test_a_target_that_cannot_be_made_is_named_itself(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(FmnistEdgeError, match=f"cannot write to {blocker / 'out'}"):
        folders.make_staging(blocker / "out")


def test_inside_ok_stages_inside_a_target_whose_parent_is_read_only(tmp_path, closed_parent):
    target = tmp_path / "out"
    target.mkdir()
    (target / f"{folders.STAGING_PREFIX}out-killed00").mkdir()  # an earlier report's, killed
    closed_parent.append(tmp_path)
    staging = folders.make_staging(target, inside_ok=True)
    assert staging.parent == target
    assert [p.name for p in target.iterdir()] == [staging.name]
    closed_parent.append(target)  # nowhere left to write: the target is named
    with pytest.raises(FmnistEdgeError, match=f"cannot write to {target}: Permission denied"):
        folders.make_staging(target, inside_ok=True)


def test_a_target_that_does_not_exist_under_a_read_only_parent_names_the_parent(tmp_path, closed_parent):
    closed_parent.append(tmp_path)
    with pytest.raises(FmnistEdgeError, match=f"cannot write to {tmp_path} \\(the new out is built there first\\)"):
        folders.make_staging(tmp_path / "out", inside_ok=True)  # no folder to stage inside


def test_only_the_targets_own_staging_folders_are_cleaned_not_a_siblings(tmp_path):
    """`model-int8` beside `model`: its staging folders, and the only copy of its previous
    version that a killed fallback left (`-old`), are not `model`'s to remove."""
    target = tmp_path / "model"
    target.mkdir()
    own = [f"{folders.STAGING_PREFIX}model-abcd_123", f"{folders.STAGING_PREFIX}model-old"]
    sibling = [f"{folders.STAGING_PREFIX}model-int8-abcd_123", f"{folders.STAGING_PREFIX}model-int8-old",
               f"{folders.STAGING_PREFIX}model-notes.txt"]
    for name in own + sibling:
        (tmp_path / name).mkdir()
    staging = folders.make_staging(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model", staging.name, *sibling])
    assert [folders.is_staging_of(n, "model") for n in own + sibling] == [True, True, False, False, False]


# -- put_in_place: a new version into a folder that also holds a user's files ------------------

def _version(folder, **files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = folder / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


OWN = {"model.onnx", "manifest.json", "samples", "old.onnx"}.__contains__


def _new_version_into(target, staging_parent):
    staging = _version(staging_parent / "staging", **{"model.onnx": "new", "manifest.json": "new",
                                                      "samples__a.png": "new"})
    folders.put_in_place(staging, target, OWN, last=("manifest.json",))
    assert not staging.exists()


def _check_moved_in(target):
    assert (target / "notes.txt").read_text() == "mine"
    assert (target / "model.onnx").read_text() == "new" and (target / "manifest.json").read_text() == "new"
    assert [p.name for p in (target / "samples").iterdir()] == ["a.png"]
    assert not (target / "old.onnx").exists()  # the old version's, which the new one dropped
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "model.onnx", "notes.txt", "samples"]


def test_own_files_are_moved_in_one_by_one_beside_a_users_and_a_folder_in_the_way_is_replaced(tmp_path):
    target = _version(tmp_path / "out", **{"notes.txt": "mine", "manifest.json": "old", "old.onnx": "old",
                                           "samples__b.png": "old"})
    (target / "model.onnx").mkdir()  # an own name that is a folder here: put aside, not an error
    notes = (target / "notes.txt").stat().st_ino
    _new_version_into(target, tmp_path)
    _check_moved_in(target)
    assert (target / "notes.txt").stat().st_ino == notes


def test_own_files_that_hold_the_new_version_already_are_left_as_they_are(tmp_path):
    target = _version(tmp_path / "out", **{"notes.txt": "mine", "manifest.json": "old", "model.onnx": "new",
                                           "samples__a.png": "new"})
    kept = {name: (target / name).stat().st_ino for name in ("model.onnx", "samples", "samples/a.png")}
    replaced = (target / "manifest.json").stat().st_ino
    _new_version_into(target, tmp_path)
    assert {name: (target / name).stat().st_ino for name in kept} == kept  # a shell in samples/ stays in it
    assert (target / "manifest.json").read_text() == "new" and (target / "manifest.json").stat().st_ino != replaced
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "model.onnx", "notes.txt", "samples"]


def test_an_own_file_that_cannot_be_read_or_has_another_mode_is_replaced(tmp_path, monkeypatch):
    target = _version(tmp_path / "out", **{"notes.txt": "mine", "manifest.json": "old", "model.onnx": "new",
                                           "samples__a.png": "new"})
    (target / "samples").chmod(0o700)  # as an older export left it: the new version's mode mends it
    before = {name: (target / name).stat().st_ino for name in ("model.onnx", "samples")}

    def unreadable(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(folders.filecmp, "cmp", unreadable)  # as root, a mode 000 file is still readable
    _new_version_into(target, tmp_path)
    _check_moved_in(target)
    assert all((target / name).stat().st_ino != ino for name, ino in before.items())
    assert (target / "samples").stat().st_mode & 0o777 != 0o700


def test_same_compares_bytes_names_and_links_not_times(tmp_path):
    a = _version(tmp_path / "a", **{"x.png": "1", "sub__y.png": "2"})
    b = _version(tmp_path / "b", **{"x.png": "1", "sub__y.png": "2"})
    os.utime(b / "x.png", (0, 0))
    assert folders._same(a, b)
    (b / "x.png").chmod(0o600)  # the same bytes, another mode
    assert not folders._same(a, b)
    (b / "x.png").chmod((a / "x.png").stat().st_mode & 0o777)
    assert folders._same(a, b)
    (b / "sub" / "y.png").write_text("3")  # one byte differs, deep down
    assert not folders._same(a, b)
    (b / "sub" / "y.png").write_text("2")
    (b / "z.png").write_text("")  # one name more
    assert not folders._same(a, b)
    (b / "z.png").unlink()
    (a / "l").symlink_to("x.png")
    (b / "l").symlink_to("sub")
    assert not folders._same(a, b)  # links count by where they point, not by what they reach
    (b / "l").unlink()
    (b / "l").symlink_to("x.png")
    assert folders._same(a, b)
    assert not folders._same(a / "x.png", b / "sub") and not folders._same(a / "x.png", tmp_path / "none")


def test_the_manifest_moves_last_and_the_others_in_the_order_of_their_names(tmp_path, monkeypatch):
    target = _version(tmp_path / "out", **{"notes.txt": "mine"})
    moved = []
    real = folders._move_in
    monkeypatch.setattr(folders, "_move_in", lambda source, dest, aside: (moved.append(dest.name),
                                                                          real(source, dest, aside)))
    _new_version_into(target, tmp_path)
    assert moved == ["model.onnx", "samples", "manifest.json"]


@pytest.fixture
def mounted(tmp_path):
    """A tmpfs mounted in the test's folder: another device, as a USB stick or a bind mount is."""
    point = tmp_path / "mnt"
    point.mkdir()
    if os.geteuid() != 0 or os.system(f"mount -t tmpfs -o size=8m tmpfs {point} 2>/dev/null") != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield point
    os.system(f"umount {point}")


def test_a_mount_point_gets_the_files_copied_across_and_loses_nothing(tmp_path, mounted):
    target = _version(mounted, **{"notes.txt": "mine", "manifest.json": "old", "model.onnx": "old",
                                  "old.onnx": "old", "samples__b.png": "old"})
    assert os.path.ismount(target)
    _new_version_into(target, tmp_path)  # staging on tmp_path's device, the target on the tmpfs
    _check_moved_in(target)
