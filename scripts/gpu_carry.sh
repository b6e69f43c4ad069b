#!/usr/bin/env bash
# Packages a GPU machine without internet lacks, fetched here so they can travel with the tree.
#
#   scripts/gpu_carry.sh                  # here (with internet): fills .whl/ and .deb/
#   source scripts/gpu_carry.sh install   # there: installs them; espeak-ng is then on PATH
#
# The lent H200 image has torch, torchaudio, lightning, torchmetrics and tensorboard, but not
# hydra-core (+ omegaconf, antlr4), soundfile (+ cffi, pycparser), pystoi or espeak-ng. Wheels
# are for CPython 3.12 (that image's); the .deb files are Debian 12's espeak-ng 1.51 with its
# libraries, unpacked under /tmp/espeak and called through a wrapper (unpacking into / could
# replace the image's own libraries). Both folders are git-ignored locally (.git/info/exclude).
_GPU_CARRY_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_GPU_CARRY_WHEELS="hydra-core==1.3.8 omegaconf==2.3.1 soundfile==0.14.0 cffi==2.1.1
pycparser==3.12 pystoi==0.4.1"
_GPU_CARRY_DEBS="espeak-ng libespeak-ng1 espeak-ng-data libpcaudio0 libsonic0 libasound2
libasound2-data libpulse0 libsndfile1 libasyncns0 libflac12 libvorbis0a libvorbisenc2 libopus0
libogg0 libmpg123-0 libmp3lame0 libx11-xcb1 libx11-6 libxcb1 libxau6 libxdmcp6 libdbus-1-3
libsystemd0 libcap2 libgcrypt20 libgpg-error0 liblzma5 libzstd1 liblz4-1 libbsd0 libmd0"

_gpu_carry_install() {  # in the caller's shell: it exports PATH
    local repo="$_GPU_CARRY_REPO" lib=/tmp/espeak/usr/lib/x86_64-linux-gnu f
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir "$repo"/.whl/*.whl ||
        return 1
    python3 -m pip install -q --no-index --no-deps --no-build-isolation -e "$repo" || return 1
    mkdir -p /tmp/espeak/bin || return 1
    for f in "$repo"/.deb/*.deb; do dpkg -x "$f" /tmp/espeak || return 1; done
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s:/tmp/espeak/lib/x86_64-linux-gnu:%s/pulseaudio ESPEAK_DATA_PATH=%s exec /tmp/espeak/usr/bin/espeak-ng "$@"\n' \
        "$lib" "$lib" "$lib" > /tmp/espeak/bin/espeak-ng && chmod +x /tmp/espeak/bin/espeak-ng ||
        return 1
    export PATH="/tmp/espeak/bin:$PATH"
    espeak-ng --version
}

_gpu_carry_fetch() (  # a subshell: set -e and cd stay inside
    set -eu
    cd "$_GPU_CARRY_REPO"
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || printf '/.whl/\n/.deb/\n' >> .git/info/exclude
    mkdir -p .whl .deb
    # shellcheck disable=SC2086
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl $_GPU_CARRY_WHEELS
    python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3  # sdist on PyPI
    # shellcheck disable=SC2086
    (cd .deb && apt-get download $_GPU_CARRY_DEBS)
    du -sh .whl .deb
)

if (return 0 2>/dev/null); then  # sourced
    if [ "${1:-}" = install ]; then _gpu_carry_install; else _gpu_carry_fetch; fi
    return $?
fi
if [ "${1:-}" = install ]; then
    echo "install changes this shell's PATH: run it as 'source scripts/gpu_carry.sh install'" >&2
    exit 2
fi
_gpu_carry_fetch
