#!/usr/bin/env bash
# Build mobile-ffi (cdylib + staticlib) for aarch64-linux-android WITHOUT the Android NDK.
#
# The NDK (dl.google.com) cannot be reached from here, so this script makes a stand-in
# toolchain from registry packages only:
#   * C compiler / linker: Debian's clang + lld + llvm (llvm-ar), targeting aarch64-linux-android$API.
#   * ring's C/asm: compiled with -nostdlibinc -DRING_CORE_NOSTDLIBINC (ring needs no libc headers).
#   * libunwind.a (required by Rust's std on Android): built from the LLVM libunwind sources
#     that the `ziglang` PyPI wheel ships, with musl's headers (same ABI for what libunwind uses).
#   * libc.so / libm.so / libdl.so / liblog.so: empty stub libraries that only carry the
#     sonames (DT_NEEDED). Symbols are resolved by Android's dynamic linker at load time;
#     the link does NOT check that every imported symbol exists at API $API (the NDK's stubs do).
#   * crtbegin_so.o / crtend_so.o: minimal equivalents of bionic's (__dso_handle, __cxa_finalize).
# Result: target/aarch64-linux-android/release/libplanetary_lan.{so,a}. Not tested on a device.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
API="${ANDROID_API:-24}"
ZIG_VERSION="${ZIG_VERSION:-0.17.1}"
TRIPLE=aarch64-linux-android
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
TC="${ANDROID_TC_DIR:-$CARGO_TARGET_DIR/android-tc}"
SYSROOT="$TC/sysroot"
LIBDIR="$SYSROOT/usr/lib/$TRIPLE"

# 1. Host tools (Debian packages).
need=()
for t in clang ld.lld llvm-ar; do command -v "$t" >/dev/null || need+=("$t"); done
if ((${#need[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang lld llvm
fi
rustup target add "$TRIPLE"

# 2. Stand-in sysroot (built once; delete $TC to rebuild).
if [ ! -f "$LIBDIR/libunwind.a" ] || [ ! -f "$LIBDIR/$API/libc.so" ]; then
    rm -rf "$TC"; mkdir -p "$TC/bin" "$TC/src" "$TC/dl" "$LIBDIR/$API"
    CL=(clang "--target=$TRIPLE$API")

    # 2a. libunwind sources + musl headers out of the ziglang wheel (PyPI), then drop the wheel.
    python3 -m pip download -q --no-deps --only-binary=:all: "ziglang==$ZIG_VERSION" -d "$TC/dl"
    python3 - "$TC/dl" "$TC/src" <<'EOF'
import glob, sys, zipfile
dl, out = sys.argv[1], sys.argv[2]
z = zipfile.ZipFile(glob.glob(dl + "/ziglang-*.whl")[0])
keep = ("ziglang/lib/libunwind/", "ziglang/lib/libc/include/aarch64-linux-musl/",
        "ziglang/lib/libc/include/generic-musl/", "ziglang/lib/libc/include/any-linux-any/")
z.extractall(out, [n for n in z.namelist() if n.startswith(keep)])
EOF
    rm -rf "$TC/dl"
    Z="$TC/src/ziglang/lib"
    UFLAGS=(-O2 -fPIC -funwind-tables -fvisibility=hidden -DNDEBUG
            -D_LIBUNWIND_IS_NATIVE_ONLY -D_LIBUNWIND_HIDE_SYMBOLS
            -D__errno_location=__errno   # musl's errno accessor -> bionic's
            -nostdlibinc -isystem "$Z/libc/include/aarch64-linux-musl"
            -isystem "$Z/libc/include/generic-musl" -isystem "$Z/libc/include/any-linux-any"
            -I "$Z/libunwind/include")
    mkdir -p "$TC/obj"
    for f in UnwindLevel1.c UnwindLevel1-gcc-ext.c gcc_personality_v0.c; do
        "${CL[@]}" "${UFLAGS[@]}" -std=c99 -c "$Z/libunwind/src/$f" -o "$TC/obj/${f%.*}.o"
    done
    "${CL[@]}" "${UFLAGS[@]}" -std=c++17 -nostdinc++ -fno-exceptions -fno-rtti \
        -c "$Z/libunwind/src/libunwind.cpp" -o "$TC/obj/libunwind.o"
    for f in UnwindRegistersRestore.S UnwindRegistersSave.S; do
        "${CL[@]}" "${UFLAGS[@]}" -c "$Z/libunwind/src/$f" -o "$TC/obj/${f%.*}.o"
    done
    llvm-ar rcs "$LIBDIR/libunwind.a" "$TC"/obj/*.o

    # 2b. crtbegin_so.o / crtend_so.o.
    cat > "$TC/src/crtbegin_so.c" <<'EOF'
extern void __cxa_finalize(void *);
__attribute__((visibility("hidden"))) void *__dso_handle = &__dso_handle;
__attribute__((destructor, visibility("hidden"))) void __on_dlclose(void) { __cxa_finalize(&__dso_handle); }
EOF
    echo 'typedef int crtend_so_empty;' > "$TC/src/crtend_so.c"
    "${CL[@]}" -O2 -fPIC -c "$TC/src/crtbegin_so.c" -o "$LIBDIR/$API/crtbegin_so.o"
    "${CL[@]}" -O2 -fPIC -c "$TC/src/crtend_so.c" -o "$LIBDIR/$API/crtend_so.o"

    # 2c. Stub system libraries (soname only).
    : > "$TC/src/empty.c"
    for l in c m dl log; do
        "${CL[@]}" -shared -nostdlib -fuse-ld=lld -Wl,-soname,"lib$l.so" "$TC/src/empty.c" -o "$LIBDIR/$API/lib$l.so"
    done
fi

# 3. Compiler and linker wrappers (regenerated every run: cheap, and follows $TC).
cat > "$TC/bin/$TRIPLE$API-clang" <<EOF
#!/bin/sh
exec clang --target=$TRIPLE$API "\$@"
EOF
cat > "$TC/bin/$TRIPLE$API-link" <<EOF
#!/bin/sh
exec clang --target=$TRIPLE$API -fuse-ld=lld --sysroot=$SYSROOT "\$@" \\
    -Wl,--push-state,--no-as-needed -lc -lm -ldl -llog -Wl,--pop-state -Wl,-z,max-page-size=16384
EOF
chmod +x "$TC/bin/$TRIPLE$API-clang" "$TC/bin/$TRIPLE$API-link"

# 4. Build.
export CC_aarch64_linux_android="$TC/bin/$TRIPLE$API-clang"
export AR_aarch64_linux_android=llvm-ar
export CFLAGS_aarch64_linux_android="-nostdlibinc -DRING_CORE_NOSTDLIBINC=1"
export CARGO_TARGET_AARCH64_LINUX_ANDROID_LINKER="$TC/bin/$TRIPLE$API-link"
cd "$ROOT"
cargo build -p mobile-ffi --target "$TRIPLE" --release "$@"

OUT="$CARGO_TARGET_DIR/$TRIPLE/release"
file "$OUT/libplanetary_lan.so" "$OUT/libplanetary_lan.a"
ls -l "$OUT/libplanetary_lan.so" "$OUT/libplanetary_lan.a"
