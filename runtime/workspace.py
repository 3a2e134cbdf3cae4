"""The run's filesystem on the host: a size-capped tmpfs and a read-only source directory.

Layout under `<state_dir>/runs/<run_id>/` (the run id is random, never user input; `runs/` itself
may be a tmpfs of its own, `mount_runs`, where creating and removing a run's directories costs a few
microseconds instead of ~150 on ext4):
- `disk/`: a tmpfs mounted by the supervisor (size = disk limit, an inode cap, nosuid, nodev).
  It holds `tmp/`, `work/` and `shm/`, bound at /tmp, /box and /dev/shm. Because it is
  its own mount, `statvfs` on its root tells whether the disk limit was hit, without
  opening anything the program could have planted.
- `src/`: the source and the request's files, written before the sandbox starts, owned
  by root, mode 0444, and bound read-only into /box: the program cannot change them. Each is
  stored under its index (`src/0`, `src/1`, ...), never under an encoding of its name.
- `<state_dir>/art/<run_id>/` (beside `runs/`, on the state dir's own filesystem, so that it can
  hard-link the compile cache even when `runs/` is a tmpfs): a compiled program's artifacts, hard
  links to (or copies of) compile cache entries, also bound read-only into /box: a run never reads
  the cache in place.

Teardown never walks the tree the program wrote: it detaches the tmpfs (MNT_DETACH),
which drops every file, symlink, FIFO and hard link at once. Nothing is ever chowned.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import secrets
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from core.filenames import Reserved, files_problem, name_problem
from runtime.compile_cache import Artifact, materialize
from runtime.errors import InvalidRequest, SandboxSetupError

MS_NOSUID = 2
MS_NODEV = 4
MNT_DETACH = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _mount_tmpfs(target: str, options: str) -> None:
    rc = _libc.mount(b"aevatar-sandbox", target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options.encode())
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount tmpfs on {target}: {os.strerror(err)}")


def _umount(target: str) -> None:
    rc = _libc.umount2(target.encode(), MNT_DETACH)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def mount_runs(state_dir: str, size_mib: int) -> bool:
    """Make `<state_dir>/runs` a tmpfs of its own (at most `size_mib`, nosuid, nodev); False if it
    already is a mount point (a killed predecessor's, swept by runtime/sweep.py: it is reused).

    Only the supervisor writes there (run directories, the request's files, the runs' mount points);
    what a program writes goes to its run's own size-capped tmpfs mounted inside.
    """
    runs = os.path.join(state_dir, "runs")
    os.makedirs(runs, mode=0o711, exist_ok=True)
    if os.path.ismount(runs):
        return False
    _mount_tmpfs(runs, f"size={size_mib * 1024 * 1024},mode=0711")
    return True


def unmount_runs(state_dir: str) -> None:
    """Detach `<state_dir>/runs` (and any run's tmpfs still inside it)."""
    with contextlib.suppress(OSError):
        _umount(os.path.join(state_dir, "runs"))


def check_relative_name(name: str) -> str:
    """A request file name, as the shared policy (core/filenames.py) takes it; InvalidRequest otherwise."""
    problem = name_problem(name)
    if problem is not None:
        raise InvalidRequest(f"file name {name!r} {problem}")
    return name


def check_file_names(names: Iterable[str], reserved: Reserved = Reserved()) -> None:
    """Every name of a request's files, together (core/filenames.py); InvalidRequest otherwise."""
    problem = files_problem(names, reserved)
    if problem is not None:
        raise InvalidRequest(f"file name {problem.name!r} {problem.message}")


@dataclass(frozen=True, slots=True)
class DiskUsage:
    used_bytes: int
    free_bytes: int
    free_inodes: int

    @property
    def full(self) -> bool:
        return self.free_bytes < 16 * 1024 or self.free_inodes == 0


class Workspace:
    def __init__(self, state_dir: str, disk_mib: int, inodes: int) -> None:
        self.run_id = secrets.token_hex(8)
        self.root = os.path.join(state_dir, "runs", self.run_id)
        self.disk = os.path.join(self.root, "disk")
        self.src = os.path.join(self.root, "src")
        self.art = os.path.join(state_dir, "art", self.run_id)
        self._disk_bytes = disk_mib * 1024 * 1024
        self._inodes = inodes
        self._mounted = False
        self.peak_used_bytes = 0
        self.ever_full = False

    @property
    def work(self) -> str:
        """The host side of the sandbox's working directory (on the run's own tmpfs)."""
        return os.path.join(self.disk, "work")

    def create(
        self, files: Mapping[str, bytes], artifacts: Sequence[Artifact] = (), empty_dirs: Sequence[str] = ()
    ) -> list[tuple[str, str]]:
        """Mount and populate; return (host file, relative name) pairs to bind read-only.

        `artifacts` (compile outputs) come after the files, so they are bound over them;
        `empty_dirs` are created writable in the working directory (a compiler's output dir).
        """
        try:
            os.makedirs(os.path.dirname(self.root), mode=0o711, exist_ok=True)
            os.mkdir(self.root, 0o711)
            os.chmod(self.root, 0o711)  # traversable by the sandbox uid (bwrap binds as that uid)
            os.mkdir(self.disk, 0o755)
            _mount_tmpfs(self.disk, f"size={self._disk_bytes},nr_inodes={self._inodes},mode=0755")
            self._mounted = True
            for sub in ("tmp", "work", "shm"):
                path = os.path.join(self.disk, sub)
                os.mkdir(path)
                os.chmod(path, 0o1777)  # fresh, empty, on our own mount: nothing to follow
            os.mkdir(self.src, 0o755)
            os.chmod(self.src, 0o755)
            binds: list[tuple[str, str]] = []
            check_file_names(files)
            for index, (name, content) in enumerate(files.items()):
                # Stored under its index: no encoding of the name can collide or outgrow NAME_MAX.
                rel, host = name, os.path.join(self.src, str(index))
                fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444)
                try:
                    view = memoryview(content)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fchmod(fd, 0o444)
                finally:
                    os.close(fd)
                binds.append((host, rel))
            for name in empty_dirs:
                if name != ".":
                    path = os.path.join(self.work, check_relative_name(name))
                    os.mkdir(path)  # fresh tmpfs: no parent can be a planted symlink
                    os.chmod(path, 0o1777)
            if artifacts:
                os.makedirs(os.path.dirname(self.art), mode=0o711, exist_ok=True)
                os.mkdir(self.art, 0o755)
                binds += materialize(artifacts, self.art)
            return binds
        except InvalidRequest:
            self.destroy()
            raise
        except OSError as exc:
            self.destroy()
            raise SandboxSetupError(f"cannot prepare the workspace: {exc}") from exc

    def usage(self) -> DiskUsage | None:
        """statvfs on our own mount point: never opens a file the program wrote."""
        if not self._mounted:
            return None
        st = os.statvfs(self.disk)
        free = st.f_bfree * st.f_frsize
        usage = DiskUsage((st.f_blocks - st.f_bfree) * st.f_frsize, free, st.f_ffree)
        self.peak_used_bytes = max(self.peak_used_bytes, usage.used_bytes)
        self.ever_full = self.ever_full or usage.full
        return usage

    def destroy(self) -> None:
        if self._mounted:
            try:
                _umount(self.disk)
            except OSError as exc:
                raise SandboxSetupError(f"cannot unmount the workspace: {exc}") from exc
            self._mounted = False
        # src/ was never writable by the sandbox; rmtree does not follow symlinks anyway.
        for tree in (self.src, self.art):
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(tree)
        for path in (self.disk, self.root):
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(path)
