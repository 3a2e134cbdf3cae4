# Language toolchains for the sandbox (issue 6). Sourced by scripts/install.sh with
# `set -euo pipefail` active and cwd = the repo root.
#
# Every toolchain must be readable by the unprivileged sandbox uid (notes/sandbox-facts.md:
# /root is 0700), so everything lands under /usr (Debian) or /opt/aevatar-sandbox (0755).
# Idempotent, and fast when everything is present. A toolchain that cannot be installed is
# reported here; the backend then lists that language as unavailable and the rest still work.
#
#   C#          mono-mcs + mono-runtime (Debian)           -> /usr/bin/mcs, /usr/bin/mono
#   C, C++      gcc, g++ (Debian)                          -> /usr/bin/gcc, /usr/bin/g++
#   Java        openjdk-17-jdk-headless (Debian)           -> /usr/lib/jvm/java-17-openjdk-amd64
#   Bash        bash (Debian, essential)
#   JavaScript  node (the machine's, or Debian's nodejs)   -> /usr/bin/node
#   TypeScript  the `typescript` npm package               -> /opt/aevatar-sandbox/typescript
#   Go          the machine's Go under /usr/local/go       (not installed here: no download allowed)
#   Rust        the rustup toolchain's rustc, copied out of /root (hard links when possible)
#                                                          -> /opt/aevatar-sandbox/rust

AEVATAR_OPT=/opt/aevatar-sandbox
AEVATAR_TS_VERSION=${AEVATAR_TS_VERSION:-5.9.3}
AEVATAR_TYPES_NODE_VERSION=${AEVATAR_TYPES_NODE_VERSION:-20}

_tc_is_root() { [ "$(id -u)" -eq 0 ]; }

_tc_apt_missing=()
for _tc_pkg in mono-mcs mono-runtime gcc g++ libc6-dev openjdk-17-jdk-headless; do
  dpkg-query -W -f='${Status}' "$_tc_pkg" 2>/dev/null | grep -q "install ok installed" || _tc_apt_missing+=("$_tc_pkg")
done
if ! command -v node >/dev/null 2>&1; then _tc_apt_missing+=(nodejs npm); fi
if [ "${#_tc_apt_missing[@]}" -gt 0 ]; then
  if _tc_is_root; then
    echo "install: toolchains: apt-get install ${_tc_apt_missing[*]}"
    apt-get update -qq || true
    # One package at a time: one that cannot be installed leaves the others (and its language unavailable).
    for _tc_pkg in "${_tc_apt_missing[@]}"; do
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$_tc_pkg" >/dev/null \
        || echo "install: toolchains: could not install $_tc_pkg; its language is reported unavailable" >&2
    done
  else
    echo "install: toolchains: run as root, or: sudo apt-get install ${_tc_apt_missing[*]}" >&2
  fi
fi

if _tc_is_root; then
  install -d -m 0755 "$AEVATAR_OPT"
fi

# TypeScript: a pinned compiler from npm, into a path the sandbox uid can read.
if [ ! -f "$AEVATAR_OPT/typescript/node_modules/typescript/lib/tsc.js" ] \
    || [ ! -f "$AEVATAR_OPT/typescript/node_modules/@types/node/package.json" ]; then
  if _tc_is_root && command -v npm >/dev/null 2>&1; then
    echo "install: toolchains: npm install typescript@$AEVATAR_TS_VERSION into $AEVATAR_OPT/typescript"
    install -d -m 0755 "$AEVATAR_OPT/typescript"
    if npm install --prefix "$AEVATAR_OPT/typescript" --no-audit --no-fund --silent "typescript@$AEVATAR_TS_VERSION" "@types/node@$AEVATAR_TYPES_NODE_VERSION"; then
      chmod -R a+rX "$AEVATAR_OPT/typescript"
    else
      echo "install: toolchains: npm install typescript failed; TypeScript is reported unavailable" >&2
    fi
  else
    echo "install: toolchains: as root: npm install --prefix $AEVATAR_OPT/typescript typescript@$AEVATAR_TS_VERSION @types/node@$AEVATAR_TYPES_NODE_VERSION" >&2
  fi
fi

# Rust: rustup keeps its toolchains under /root (0700). Copy the active toolchain's compiler
# and the target's standard library (not docs, not sources) to /opt, as hard links when on the
# same file system (instant, no space); refreshed when the version changes.
_tc_rustc=""
if command -v rustc >/dev/null 2>&1; then _tc_rustc=$(command -v rustc); fi
if [ -n "$_tc_rustc" ] && [ "$_tc_rustc" != "$AEVATAR_OPT/rust/bin/rustc" ]; then
  _tc_sysroot=$(rustc --print sysroot 2>/dev/null || true)
  _tc_want=$(rustc --version 2>/dev/null || true)
  _tc_have=$(cat "$AEVATAR_OPT/rust/VERSION" 2>/dev/null || true)
  if [ -n "$_tc_sysroot" ] && [ "$_tc_want" != "$_tc_have" ]; then
    if _tc_is_root; then
      echo "install: toolchains: copying $_tc_want from $_tc_sysroot to $AEVATAR_OPT/rust"
      _tc_tmp="$AEVATAR_OPT/.rust.tmp.$$"
      rm -rf "$_tc_tmp"
      install -d -m 0755 "$_tc_tmp/bin" "$_tc_tmp/lib/rustlib"
      _tc_copy() { cp -al "$1" "$2" 2>/dev/null || cp -a "$1" "$2"; }
      _tc_copy "$_tc_sysroot/bin/rustc" "$_tc_tmp/bin/rustc"
      for _tc_lib in "$_tc_sysroot"/lib/*.so*; do _tc_copy "$_tc_lib" "$_tc_tmp/lib/"; done
      _tc_host=$(rustc -vV | sed -n 's/^host: //p')
      _tc_copy "$_tc_sysroot/lib/rustlib/$_tc_host" "$_tc_tmp/lib/rustlib/$_tc_host"
      printf '%s\n' "$_tc_want" > "$_tc_tmp/VERSION"
      chmod -R a+rX "$_tc_tmp"
      rm -rf "$AEVATAR_OPT/rust"
      mv "$_tc_tmp" "$AEVATAR_OPT/rust"
    else
      echo "install: toolchains: as root, copy the rustc toolchain at $_tc_sysroot to $AEVATAR_OPT/rust" >&2
    fi
  fi
elif [ -z "$_tc_rustc" ] && [ ! -x "$AEVATAR_OPT/rust/bin/rustc" ]; then
  echo "install: toolchains: no rustc on this host (install rustup's stable toolchain); Rust is reported unavailable" >&2
fi

# Go: a read-only, pre-built build cache of the standard library, so a sandboxed compile
# does not rebuild `fmt` and the runtime (about 10 s of CPU) every time. It is bound read-only
# into the compile sandbox as GOCACHE (go treats cache writes as best-effort); a program's own
# packages are built in the sandbox's tmpfs. The environment must match runtime/languages/go.py.
AEVATAR_GO_CACHE="$AEVATAR_OPT/go-cache"
if [ -x /usr/local/go/bin/go ]; then
  _tc_gover=$(/usr/local/go/bin/go version 2>/dev/null || true)
  if [ "$_tc_gover" != "$(cat "$AEVATAR_GO_CACHE/VERSION" 2>/dev/null || true)" ]; then
    if _tc_is_root; then
      echo "install: toolchains: building the Go standard library cache in $AEVATAR_GO_CACHE (a few minutes, once)"
      rm -rf "$AEVATAR_GO_CACHE.tmp"
      install -d -m 0755 "$AEVATAR_GO_CACHE.tmp"
      if env -i PATH=/usr/bin:/bin HOME=/tmp GOCACHE="$AEVATAR_GO_CACHE.tmp" GOTOOLCHAIN=local GOPROXY=off \
          GOFLAGS=-buildvcs=false CGO_ENABLED=0 /usr/local/go/bin/go build std; then
        printf '%s\n' "$_tc_gover" > "$AEVATAR_GO_CACHE.tmp/VERSION"
        chmod -R a+rX "$AEVATAR_GO_CACHE.tmp"
        rm -rf "$AEVATAR_GO_CACHE"
        mv "$AEVATAR_GO_CACHE.tmp" "$AEVATAR_GO_CACHE"
      else
        echo "install: toolchains: the Go cache build failed; Go compiles will be slow" >&2
      fi
    else
      echo "install: toolchains: as root, rerun this script to build $AEVATAR_GO_CACHE" >&2
    fi
  fi
else
  echo "install: toolchains: no Go in /usr/local/go; Go is reported unavailable" >&2
fi
unset _tc_gover _tc_apt_missing _tc_pkg _tc_rustc _tc_sysroot _tc_want _tc_have _tc_tmp _tc_lib _tc_host
