#!/usr/bin/env bash
# Checks that the GPU worker build (`rushes-worker --features cuda`) compiles, on a
# machine without a CUDA toolkit: NVIDIA's compiler wheels from PyPI provide nvcc
# (candle's kernels are compiled by its build script even for `cargo check`). A GPU and
# driver are not needed to build; running that build needs the CUDA libraries.
#
#   deploy/cuda-check.sh            # installs the wheels once (≈340 MB) then checks
#
# Env: RUSHES_CACHE_DIR (default $HOME/.cache/rushes): wheels go to $CACHE/cuda-wheels;
# CUDA_WHEELS_VERSION (default 13.4.92); CUDA_COMPUTE_CAP (default 90, H100);
# CUDA_CHECK_TARGET_DIR (default $CACHE/target-cuda: kept apart from the usual target
# dir, whose candle build it would otherwise invalidate).
set -euo pipefail

CACHE="${RUSHES_CACHE_DIR:-$HOME/.cache/rushes}"
WHEELS="$CACHE/cuda-wheels"
VERSION="${CUDA_WHEELS_VERSION:-13.4.92}"
PY="${PYTHON:-python3}"
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ ! -f "$WHEELS/.installed-$VERSION" ]; then
    rm -rf "$WHEELS"
    mkdir -p "$WHEELS"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --target "$WHEELS/site" \
        "nvidia-cuda-nvcc==$VERSION" "nvidia-cuda-crt==$VERSION" "nvidia-cuda-runtime==$VERSION" \
        "nvidia-nvvm==$VERSION" "nvidia-cuda-cccl>=13,<14"
    touch "$WHEELS/.installed-$VERSION"
fi

nvcc=$(find "$WHEELS/site" -type f -path '*/bin/nvcc' | head -n1)
if [ -z "$nvcc" ]; then
    echo "cuda-check: nvcc not found under $WHEELS/site" >&2
    exit 1
fi
CUDA_ROOT=$(dirname "$(dirname "$nvcc")")
chmod +x "$CUDA_ROOT"/bin/* 2>/dev/null || true
find "$WHEELS/site" -type f -path '*/nvvm/bin/*' -exec chmod +x {} + 2>/dev/null || true

# The wheels install side by side; nvcc wants one tree: nvvm/ and the CCCL headers
# (cuda/std, thrust, cub) beside its own include/.
for dir in $(find "$WHEELS/site" -maxdepth 4 -type d -name nvvm); do
    [ "$dir" = "$CUDA_ROOT/nvvm" ] || [ -e "$CUDA_ROOT/nvvm" ] || ln -s "$dir" "$CUDA_ROOT/nvvm"
done
for inc in $(find "$WHEELS/site" -maxdepth 4 -type d -name include); do
    [ "$inc" = "$CUDA_ROOT/include" ] && continue
    cp -rn "$inc"/. "$CUDA_ROOT/include/" 2>/dev/null || true
done
if [ ! -e "$CUDA_ROOT/lib64" ] && [ -d "$CUDA_ROOT/lib" ]; then
    ln -s lib "$CUDA_ROOT/lib64"
fi

export PATH="$CUDA_ROOT/bin:$PATH"
export CUDA_HOME="$CUDA_ROOT" CUDA_PATH="$CUDA_ROOT" CUDA_ROOT
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export LD_LIBRARY_PATH="$CUDA_ROOT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvcc --version | tail -n 2

cd "$ROOT_DIR"
CARGO_TARGET_DIR="${CUDA_CHECK_TARGET_DIR:-$CACHE/target-cuda}" cargo check -p rushes-worker --features cuda
echo "cuda-check: rushes-worker --features cuda checks with nvcc $VERSION (compute capability $CUDA_COMPUTE_CAP)"
