"""seqlab.errors.os_error: the OSErrors a user fixes on their side, said as what they mean."""

import errno
import os

import pytest

from seqlab.errors import ConfigError, OutputError, StorageFullError, os_error


def failure(code: int, path: str | None = None) -> OSError:
    return OSError(code, os.strerror(code), *([path] if path else []))


@pytest.mark.parametrize("code, kind, said", [
    (errno.EROFS, OutputError, "cannot write {path}: it is on a read-only file system"),
    (errno.EACCES, OutputError, "permission denied on {path}"),
    (errno.EPERM, OutputError, "permission denied on {path}"),
    (errno.ENOTDIR, OutputError, "cannot write {path}: a folder on its path is a file"),
    (errno.ENOSPC, StorageFullError, "no space left on the device writing {path}"),
    (errno.EDQUOT, StorageFullError, "disk quota exceeded on the device writing {path}"),
])
def test_each_errno_is_its_error_naming_the_path(code, kind, said, tmp_path):
    path = str(tmp_path / "out" / "_progress" / "_run.json")
    known = os_error(failure(code, path), output=str(tmp_path / "out"), resumes=True)
    assert type(known) is kind
    assert known.message.startswith(said.format(path=path))
    assert known.exit_code == (1 if kind is StorageFullError else 2)


def test_a_full_disk_names_its_mount_and_says_the_rerun_resumes(tmp_path):
    path = tmp_path / "out" / "documents" / "part-00000-0000000000.parquet"
    mount = tmp_path
    while not os.path.ismount(mount):
        mount = mount.parent
    known = os_error(failure(errno.ENOSPC, str(path)), output=str(tmp_path / "out"),
                     resumes=True)
    assert known.message.endswith(f"(the file system mounted at {mount})")
    assert known.fix == ("free space and rerun the same command: it resumes (input files "
                         "already done are kept)")
    assert os_error(failure(errno.ENOSPC, str(path))).fix == \
        "free space and rerun the same command"  # a command that does not resume


def test_the_path_is_outputs_where_the_error_names_none(tmp_path):
    out = str(tmp_path / "out")
    assert os_error(failure(errno.ENOSPC), output=out).message.startswith(
        f"no space left on the device writing {out}")
    # an object store's refusal: a PermissionError without errno or file
    refused = os_error(PermissionError("Access Denied"), output="s3://bucket/out")
    assert isinstance(refused, OutputError)
    assert refused.message == "permission denied on s3://bucket/out"
    assert "credentials allowed to write there" in refused.fix


def test_permission_fixes_name_the_nearest_folder_and_speak_of_output_only_for_it(tmp_path):
    out = tmp_path / "locked" / "out"
    (tmp_path / "locked").mkdir()
    denied = os_error(failure(errno.EACCES, str(out)), output=str(out))
    assert denied.fix.startswith(f"give this user write permission on {tmp_path / 'locked'} ")
    assert "choose an OUTPUT it may write to" in denied.fix
    elsewhere = os_error(failure(errno.EACCES, str(tmp_path / "cache" / "model")),
                         output=str(out))
    assert isinstance(elsewhere, ConfigError) and "OUTPUT" not in elsewhere.fix
    assert elsewhere.fix == f"give this user access to {tmp_path} (chmod or chown)"
    read_only = os_error(failure(errno.EROFS, str(tmp_path / "cache")), output=str(out))
    assert isinstance(read_only, ConfigError) and "OUTPUT" not in read_only.fix


def test_an_error_raised_from_one_is_translated_and_others_are_not(tmp_path):
    try:
        try:
            raise failure(errno.EROFS, str(tmp_path / "out"))
        except OSError as exc:
            raise RuntimeError("the write of a part failed") from exc
    except RuntimeError as wrapped:
        assert isinstance(os_error(wrapped), OutputError)

    class TaskError(Exception):  # as Ray returns a worker's error: the original as ``cause``
        def __init__(self, cause: BaseException) -> None:
            self.cause = cause

    assert isinstance(os_error(TaskError(failure(errno.ENOSPC, "/x"))), StorageFullError)
    for other in (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
                  TimeoutError(errno.ETIMEDOUT, "timed out"), FileNotFoundError(errno.ENOENT, "x"),
                  OSError("an endpoint's error without errno"), KeyError("n_tokens")):
        assert os_error(other) is None
