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
