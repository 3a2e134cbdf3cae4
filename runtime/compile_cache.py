"""The compile cache: artifacts of earlier compiles, keyed by toolchain, flags and sources.

- **Key** (`cache_key`, pure): SHA-256 over the language, the toolchain's version-probe
  output, the compile argv and environment, and every submitted file (name and bytes),
  each length-prefixed so no two different inputs can collide by concatenation.
- **Storage**: `<root>/entries/<key>/` holds the artifacts, root-owned, read-only, outside
  any sandbox. Only the supervisor writes here: `collect` copies the regular files the
  compiler left in the compile workspace, opening each one with O_NOFOLLOW | O_NONBLOCK
  relative to a directory fd (so no symlink, on any path component, is ever followed, and a
  FIFO never blocks), then `fstat` must say "regular file", and sizes and counts are capped.
  Sandboxed code never writes into an entry, so one program cannot poison another's cache.
- **Publication** is atomic: a complete copy in `<root>/tmp/` is renamed into `entries/`.
- **LRU eviction** bounds the total size: every hit touches the entry's `.used` stamp, and
  `evict` removes the least recently used entries until the total is under `max_bytes`.
  A run never reads an entry in place: `materialize` hard-links (or copies) the artifacts
  into the run's own directory first, so an eviction cannot pull files from under a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from runtime.errors import RuntimeSandboxError

USED_STAMP = ".used"
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_OPEN_DIR = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC


class ArtifactError(RuntimeSandboxError):
    """The compiler's outputs cannot be cached: too big, too many, or not regular files."""


@dataclass(frozen=True, slots=True)
class CacheLimits:
    max_bytes: int = 1024 * 1024 * 1024  # the whole cache
    max_entry_bytes: int = 128 * 1024 * 1024  # one compile's artifacts
    max_files: int = 4096  # per entry
    max_depth: int = 8


@dataclass(frozen=True, slots=True)
class Artifact:
    rel: str  # path relative to the artifacts directory, "/"-separated
    host_path: str
    size_bytes: int
    executable: bool


def cache_key(
    language: str,
    toolchain: bytes,
    compile_argv: Sequence[str],
    env: Mapping[str, str],
    files: Mapping[str, bytes],
) -> str:
    """Pure: the hex SHA-256 identifying one compile."""
    h = hashlib.sha256(b"aevatar-compile-cache-v1\0")

    def put(data: bytes) -> None:
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)

    put(language.encode())
    put(toolchain)
    put(str(len(compile_argv)).encode())
    for arg in compile_argv:
        put(arg.encode())
    put(str(len(env)).encode())
    for key in sorted(env):
        put(key.encode())
        put(env[key].encode())
    put(str(len(files)).encode())
    for name in sorted(files):
        put(name.encode())
        put(files[name])
    return h.hexdigest()


class CompileCache:
    """Artifacts on the host file system, keyed by `cache_key`; written only by the supervisor."""

    def __init__(self, root: str, limits: CacheLimits | None = None) -> None:
        self.root = root
        self.limits = limits or CacheLimits()
        self.entries = os.path.join(root, "entries")
        self.tmp = os.path.join(root, "tmp")

    def ensure(self) -> None:
        # 0711: the sandbox uids may not list entries; they never need to, runs get hard links.
        for path in (self.root, self.entries, self.tmp):
            os.makedirs(path, mode=0o711, exist_ok=True)
            os.chmod(path, 0o711)

    # -- lookup -----------------------------------------------------------------------------
    def lookup(self, key: str) -> list[Artifact] | None:
        """The entry's artifacts, or None; a hit marks the entry as recently used."""
        entry = self._entry(key)
        try:
            artifacts = list(self._walk_entry(entry))
            os.utime(os.path.join(entry, USED_STAMP))
        except FileNotFoundError:
            return None
        return artifacts

    def _walk_entry(self, entry: str) -> Iterable[Artifact]:
        for dirpath, dirnames, filenames in os.walk(entry, onerror=_raise):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, entry)
                if rel == USED_STAMP:
                    continue
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode):
                    yield Artifact(rel, path, st.st_size, bool(st.st_mode & 0o111))

    # -- store ------------------------------------------------------------------------------
    def collect(self, key: str, out_dir: str, exclude: Iterable[str] = ()) -> list[Artifact]:
        """Copy the regular files under `out_dir` (written by sandboxed code) into the entry `key`.

        `exclude`: relative names to skip (the bind-mount points of the submitted files).
        Raises ArtifactError when a cap is exceeded; symlinks, FIFOs, sockets and devices are skipped.
        """
        self.ensure()
        staging = os.path.join(self.tmp, f"{key}.{secrets.token_hex(6)}")
        os.mkdir(staging, 0o755)
        try:
            src_fd = os.open(out_dir, _OPEN_DIR)
            try:
                budget = _Budget(self.limits, set(exclude))
                _copy_tree(src_fd, staging, "", 0, budget)
            finally:
                os.close(src_fd)
            stamp = os.open(os.path.join(staging, USED_STAMP), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            os.close(stamp)
            os.chmod(staging, 0o755)
            try:
                os.rename(staging, self._entry(key))
            except OSError:
                # Another supervisor stored the same key first: the entries are equivalent.
                shutil.rmtree(staging, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        found = self.lookup(key)
        if found is None:
            raise ArtifactError(f"compile cache entry {key} vanished right after it was stored")
        return found

    # -- eviction ---------------------------------------------------------------------------
    def usage(self) -> list[tuple[float, int, str]]:
        """(last used, size in bytes, key) for every entry."""
        out = []
        with contextlib.suppress(FileNotFoundError):
            for key in os.listdir(self.entries):
                entry = self._entry(key)
                try:
                    used = os.lstat(os.path.join(entry, USED_STAMP)).st_mtime
                    size = sum(a.size_bytes for a in self._walk_entry(entry))
                except FileNotFoundError:
                    continue
                out.append((used, size, key))
        return out

    def evict(self) -> list[str]:
        """Remove least recently used entries until the cache fits `max_bytes`; return their keys."""
        entries = sorted(self.usage())
        total = sum(size for _, size, _ in entries)
        removed = []
        for _, size, key in entries:
            if total <= self.limits.max_bytes:
                break
            self.remove(key)
            total -= size
            removed.append(key)
        return removed

    def remove(self, key: str) -> None:
        # Rename first, so a concurrent lookup sees the entry whole or not at all.
        doomed = os.path.join(self.tmp, f"evicted.{key}.{secrets.token_hex(6)}")
        try:
            os.rename(self._entry(key), doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed, ignore_errors=True)

    def _entry(self, key: str) -> str:
        if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a cache key: {key!r}")
        return os.path.join(self.entries, key)


ELF_MAGIC = b"\x7fELF"


def check_artifacts(artifacts: Sequence[Artifact], required: Sequence[tuple[str, bool]]) -> None:
    """Raise ArtifactError unless every `(rel, executed)` the run step needs is there (and, when it
    is exec'd directly, an executable ELF file: a Rust library crate's rlib is not)."""
    by_rel = {a.rel: a for a in artifacts}
    for rel, executed in required:
        found = by_rel.get(rel)
        if found is None:
            raise ArtifactError(f"the compiler produced no {rel!r}, which the run needs")
        if executed:
            with open(found.host_path, "rb") as f:  # a cache entry: root-owned, written by us
                magic = f.read(len(ELF_MAGIC))
            if not found.executable or magic != ELF_MAGIC:
                raise ArtifactError(f"{rel!r} is not an executable program (a library, or no main function?)")


def materialize(artifacts: Sequence[Artifact], dest_dir: str) -> list[tuple[str, str]]:
    """Hard-link (or copy, across file systems) artifacts into `dest_dir`; return (host file, rel) pairs."""
    out = []
    for index, a in enumerate(artifacts):
        # Under its index: a deep artifact path (a Java package) never makes a host name too long.
        host = os.path.join(dest_dir, str(index))
        try:
            os.link(a.host_path, host, follow_symlinks=False)
        except OSError:
            shutil.copyfile(a.host_path, host, follow_symlinks=False)
            os.chmod(host, 0o555 if a.executable else 0o444)
        out.append((host, a.rel))
    return out


@dataclass(slots=True)
class _Budget:
    limits: CacheLimits
    exclude: set[str]
    files: int = 0
    size_bytes: int = 0


def _copy_tree(dir_fd: int, dest: str, prefix: str, depth: int, budget: _Budget) -> None:
    if depth > budget.limits.max_depth:
        raise ArtifactError("compile artifacts: directory tree too deep")
    with os.scandir(dir_fd) as it:
        names = sorted(e.name for e in it)
    for name in names:
        rel = f"{prefix}{name}"
        if rel in budget.exclude:
            continue
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            sub_fd = os.open(name, _OPEN_DIR, dir_fd=dir_fd)
            try:
                sub_dest = os.path.join(dest, name)
                os.mkdir(sub_dest, 0o755)
                _copy_tree(sub_fd, sub_dest, f"{rel}/", depth + 1, budget)
            finally:
                os.close(sub_fd)
        elif stat.S_ISREG(st.st_mode):
            _copy_file(dir_fd, name, os.path.join(dest, name), budget)
        # Symlinks, FIFOs, sockets and devices are never opened: they are not artifacts.


def _copy_file(dir_fd: int, name: str, dest: str, budget: _Budget) -> None:
    try:
        fd = os.open(name, _OPEN_FILE, dir_fd=dir_fd)
    except OSError as exc:  # ELOOP: replaced by a symlink since the stat; ENXIO: a socket
        raise ArtifactError(f"compile artifact {name!r} cannot be opened safely: {exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ArtifactError(f"compile artifact {name!r} is not a regular file")
        budget.files += 1
        room = budget.limits.max_entry_bytes - budget.size_bytes
        if budget.files > budget.limits.max_files:
            raise ArtifactError(f"compile artifacts: more than {budget.limits.max_files} files")
        if st.st_size > room:
            raise ArtifactError(f"compile artifacts: more than {budget.limits.max_entry_bytes} bytes")
        mode = 0o555 if st.st_mode & 0o111 else 0o444
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            copied = 0
            while chunk := os.read(fd, min(1 << 20, room - copied + 1)):
                copied += len(chunk)
                if copied > room:  # grew after the fstat: still capped
                    raise ArtifactError(f"compile artifacts: more than {budget.limits.max_entry_bytes} bytes")
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
            os.fchmod(out, mode)
        finally:
            os.close(out)
        budget.size_bytes += copied
    finally:
        os.close(fd)


def _raise(exc: OSError) -> None:
    raise exc
