"""Host paths that several adapters bind read-only (Debian bookworm, x86_64; all world-readable).

Binding a symlink binds its target's content at the link's path, so `/usr/bin/as` (a link
to x86_64-linux-gnu-as) appears as a plain executable inside the sandbox.
"""

from __future__ import annotations

OPT = "/opt/aevatar-sandbox"  # what scripts/install.d/20-toolchains.sh installs (0755, not under /root)

# The C library, libstdc++ and the shared libraries every toolchain links against.
# /usr/lib/locale holds C.utf8, the locale of the sandbox's LANG/LC_ALL.
SHARED_LIBS: tuple[str, ...] = ("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib/locale")

# gcc/g++ and binutils: the drivers, cc1/cc1plus/collect2 and crt files, as and ld, the headers.
GCC_TOOLCHAIN: tuple[str, ...] = (
    "/usr/bin/gcc",
    "/usr/bin/cc",
    "/usr/bin/as",
    "/usr/bin/ld",
    "/usr/lib/gcc",
    "/usr/include",
    *SHARED_LIBS,
)
