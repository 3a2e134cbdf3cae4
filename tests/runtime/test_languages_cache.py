"""The compile cache and the adapters' data: pure key and argv tests, the supervisor's safe
copy-out (on the host file system), and the whole path through real sandboxes."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest

from runtime.compile_cache import ArtifactError, CacheLimits, CompileCache, cache_key, materialize
from runtime.languages import LANGUAGES, SOURCE, SOURCES, Language
from runtime.local import LocalBackend
from runtime.types import Limits
from streams.states import State
from tests.runtime.conftest import Runner, make_config

PY = "/usr/bin/python3.11"
FILES = {"main.go": b"package main", "util.go": b"package main // util"}


def key(**overrides: object) -> str:
    args: dict[str, object] = {
        "language": "go", "toolchain": b"go version go1.26.8", "compile_argv": ["go", "build", "main.go"],
        "env": {"CGO_ENABLED": "0"}, "files": FILES,
    }  # fmt: skip
    args.update(overrides)
    return cache_key(**args)  # type: ignore[arg-type]


def test_cache_key_depends_on_toolchain_flags_env_and_every_file() -> None:
    base = key()
    assert key() == base and len(base) == 64
    variants = [
        key(language="c"),
        key(toolchain=b"go version go1.26.9"),
        key(compile_argv=["go", "build", "-race", "main.go"]),
        key(env={"CGO_ENABLED": "1"}),
        key(files={**FILES, "util.go": b"package main // changed"}),
        key(files={"main.go": b"package main", "util2.go": b"package main // util"}),
        key(files={"main.go": b"package main"}),
        # No ambiguity from concatenation: moving bytes between fields changes the key.
        key(compile_argv=["go", "buildmain.go"]),
    ]
    assert len({base, *variants}) == len(variants) + 1


def test_argv_placeholders_expand_sources_and_memory() -> None:
    lang = Language(
        name="x", source_file="main.c", run=("./a", "-m{memory_mib}"), version_probe=("x",), self_test_code="",
        self_test_stdin=b"", self_test_expected_stdout=b"", compile=("cc", SOURCES, "-o", "a", "-l{memory_mib}"),
        source_suffixes=(".c",), compile_limits=Limits(memory_mib=700),
    )  # fmt: skip
    files = ["z.c", "main.c", "a.c", "data.txt", "b.h", "sub/d.c"]
    assert lang.compile_argv(files) == ["cc", "main.c", "a.c", "sub/d.c", "z.c", "-o", "a", "-l700"]
    assert lang.run_argv(["x y"], files, memory_mib=64) == ["./a", "-m64", "x y"]
    rust = LANGUAGES["rust"]
    assert rust.compile is not None and SOURCE in rust.compile and SOURCES not in rust.compile


@pytest.mark.parametrize("name", sorted(LANGUAGES))
def test_adapters_are_complete_and_readable_by_the_sandbox_uid(name: str) -> None:
    lang = LANGUAGES[name]
    assert lang.self_test_code and lang.self_test_stdin == lang.self_test_expected_stdout
    assert lang.version_probe and lang.run
    for path in lang.toolchain_paths:
        assert path.startswith(("/usr/", "/opt/", "/etc/")) and not path.startswith("/root"), path
    if lang.compiled:
        assert lang.compile_error_code and lang.compile_error_fragment
        assert lang.compile_limits.wall_time_ms >= 30_000  # rustc, javac and mcs are slow on a busy box
        assert lang.artifacts_dir == "out"


# -- the supervisor's copy-out, on the host ----------------------------------------------------


def _planted(tmp: Path) -> Path:
    out = tmp / "out"
    (out / "pkg").mkdir(parents=True)
    (out / "main").write_bytes(b"\x7fELF binary")
    os.chmod(out / "main", 0o700)
    (out / "pkg" / "A.class").write_bytes(b"class A")
    (tmp / "secret").write_bytes(b"root's secret")
    os.symlink(tmp / "secret", out / "link")  # a symlink to something the sandbox could not read
    os.symlink(tmp, out / "dirlink")
    os.mkfifo(out / "fifo")  # opening it for reading would block a naive supervisor forever
    (out / "mount-point").write_bytes(b"")
    return out


def test_collect_copies_regular_files_only_and_never_follows_links(tmp_path: Path) -> None:
    cache = CompileCache(str(tmp_path / "cache"))
    k = key(files={"n": uuid.uuid4().bytes})
    out = _planted(tmp_path)
    got = {a.rel: a for a in cache.collect(k, str(out), exclude=["mount-point"])}
    assert sorted(got) == ["main", "pkg/A.class"]
    assert got["main"].executable and not got["pkg/A.class"].executable
    st = os.lstat(got["main"].host_path)
    assert stat.S_ISREG(st.st_mode) and st.st_mode & 0o777 == 0o555 and st.st_uid == os.getuid()
    assert Path(got["main"].host_path).read_bytes() == b"\x7fELF binary"
    # A later change in the compile workspace does not reach the cache entry (it is a copy).
    (out / "main").write_bytes(b"poisoned")
    hit = cache.lookup(k)
    assert hit is not None and Path(hit[0].host_path).read_bytes() == b"\x7fELF binary"


def test_collect_refuses_oversized_or_too_many_artifacts(tmp_path: Path) -> None:
    cache = CompileCache(str(tmp_path / "cache"), CacheLimits(max_entry_bytes=1000, max_files=3))
    big = tmp_path / "big"
    big.mkdir()
    (big / "a").write_bytes(b"x" * 1001)
    with pytest.raises(ArtifactError, match="bytes"):
        cache.collect(key(language="big"), str(big))
    many = tmp_path / "many"
    many.mkdir()
    for i in range(4):
        (many / f"f{i}").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="files"):
        cache.collect(key(language="many"), str(many))
    assert os.listdir(cache.tmp) == [] and os.listdir(cache.entries) == []  # nothing half-stored


def test_collect_refuses_a_symlinked_output_directory(tmp_path: Path) -> None:
    cache = CompileCache(str(tmp_path / "cache"))
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "out")
    with pytest.raises(OSError):
        cache.collect(key(), str(tmp_path / "out"))


def test_lru_eviction_keeps_the_recently_used(tmp_path: Path) -> None:
    cache = CompileCache(str(tmp_path / "cache"), CacheLimits(max_bytes=2500))
    keys = [key(language=f"l{i}") for i in range(3)]
    for i, k in enumerate(keys):
        src = tmp_path / f"src{i}"
        src.mkdir()
        (src / "a").write_bytes(b"x" * 1000)
        cache.collect(k, str(src))
        os.utime(os.path.join(cache.entries, k, ".used"), (1000 + i, 1000 + i))
    assert [a.rel for a in cache.lookup(keys[0]) or []] == ["a"]  # a hit: now the most recently used
    assert cache.evict() == [keys[1]]
    assert cache.lookup(keys[1]) is None
    assert [a.rel for a in cache.lookup(keys[0]) or []] == ["a"] == [a.rel for a in cache.lookup(keys[2]) or []]


def test_materialize_survives_eviction(tmp_path: Path) -> None:
    cache = CompileCache(str(tmp_path / "cache"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "main").write_bytes(b"program")
    k = key(language="mat")
    arts = cache.collect(k, str(src))
    dest = tmp_path / "run"
    dest.mkdir()
    binds = materialize(arts, str(dest))
    cache.remove(k)
    assert cache.lookup(k) is None
    assert [(Path(h).read_bytes(), rel) for h, rel in binds] == [(b"program", "main")]


# -- through real sandboxes --------------------------------------------------------------------

# A "compiler" that plants everything a hostile build could leave behind in its output directory.
PLANTING = Language(
    name="planting",
    source_file="main.py",
    compile=(PY, "-I", "-S", "-c", "\n".join([
        "import os",
        "open('out/prog.py', 'w').write(open('main.py').read())",
        "os.symlink('/etc/hostname', 'out/link')",
        "os.symlink('/box/main.py', 'out/self')",
        "os.mkfifo('out/fifo')",
        "os.link('out/prog.py', 'out/hard.py')",
    ])),
    run=(PY, "-I", "-S", "out/prog.py"),
    version_probe=(PY, "--version"),
    toolchain_paths=LANGUAGES["python"].toolchain_paths,
    artifacts_dir="out",
    self_test_code="import os\nprint(sorted(os.listdir('out')))\n",
    self_test_stdin=b"",
    self_test_expected_stdout=b"['hard.py', 'prog.py']\n",
    compile_limits=Limits(wall_time_ms=30_000, cpu_time_ms=10_000, memory_mib=128, processes=16, disk_mib=8),
)  # fmt: skip
BLOATING = Language(
    name="bloating",
    source_file="main.py",
    compile=(PY, "-I", "-S", "-c", "open('out/big', 'wb').write(b'x' * 300_000)"),
    run=(PY, "-I", "-S", "main.py"),
    version_probe=(PY, "--version"),
    toolchain_paths=LANGUAGES["python"].toolchain_paths,
    artifacts_dir="out",
    self_test_code="print('unreachable')\n",
    self_test_stdin=b"",
    self_test_expected_stdout=b"unreachable\n",
    compile_limits=PLANTING.compile_limits,
)
SLOW_COMPILE_WALL_MS = 60_000
SLOW = Language(
    name="slow",
    source_file="main.py",
    compile=(PY, "-I", "-S", "-c", "while True: pass"),
    run=(PY, "-I", "-S", "main.py"),
    version_probe=(PY, "--version"),
    toolchain_paths=LANGUAGES["python"].toolchain_paths,
    self_test_code="print('unreachable')\n",
    self_test_stdin=b"",
    self_test_expected_stdout=b"unreachable\n",
    # The wall limit far off: only the CPU limit can end the compile, even on a loaded machine.
    compile_limits=Limits(wall_time_ms=SLOW_COMPILE_WALL_MS, cpu_time_ms=500, memory_mib=64, processes=8, disk_mib=4),
)
MISSING = Language(
    name="missing",
    source_file="main.x",
    run=("/opt/aevatar-sandbox/no-such-toolchain/bin/x", SOURCE),
    version_probe=("/opt/aevatar-sandbox/no-such-toolchain/bin/x", "--version"),
    toolchain_paths=("/opt/aevatar-sandbox/no-such-toolchain",),
    compile=("/opt/aevatar-sandbox/no-such-toolchain/bin/xc", SOURCE),
    self_test_code="",
    self_test_stdin=b"",
    self_test_expected_stdout=b"",
)


async def test_only_regular_artifacts_reach_the_run(tmp_path: Path) -> None:
    cfg = make_config(
        languages={
            "planting": PLANTING,
            "bloating": BLOATING,
            "missing": MISSING,
            "slow": SLOW,
            "python": LANGUAGES["python"],
        },
        compile_cache_dir=str(tmp_path / "cache"),
        compile_cache_limits=CacheLimits(max_entry_bytes=200_000),
    )
    backend = LocalBackend(cfg)
    try:
        run = Runner(backend)
        code = PLANTING.self_test_code + f"# {uuid.uuid4().hex}\n"
        outcome = await run(code, language="planting")
        assert outcome.state is State.SUCCEEDED, (outcome, outcome.compile_output)
        assert outcome.stdout == PLANTING.self_test_expected_stdout  # no link, no self link, no FIFO

        bloated = await run("print(1)\n", language="bloating")
        assert bloated.state is State.COMPILE_ERROR
        assert b"cannot be used" in bloated.compile_output and b"bytes" in bloated.compile_output

        # The compile phase has its own limits, separate from the run's (SMALL: cpu 1000 ms).
        slow = await run("print(1)\n", language="slow")
        assert slow.state is State.COMPILE_ERROR and slow.limit is not None and slow.limit.value == "cpu_time"
        # It compiled until its own CPU limit (500 ms), was stopped there, not by its wall limit, and never ran.
        assert 500 <= slow.compile_ms < SLOW_COMPILE_WALL_MS and slow.run_ms == 0

        # A language whose toolchain is missing is reported unavailable; the others still work.
        infos = {i.name: i for i in await backend.languages()}
        assert not infos["missing"].available and infos["missing"].version == ""
        assert infos["python"].available and infos["planting"].available
        missing = await run("anything", language="missing")
        assert missing.state is State.ERROR and "not available" in (missing.error or "")
        assert (await run("print('still fine')", language="python")).stdout == b"still fine\n"
    finally:
        await backend.close()
