#!/usr/bin/env bash
# Here, before a GPU lease (this machine reaches PyPI; the GPU machine reaches nothing): the wheels the GPU machine's
# Python 3.12 image lacks, in two folders git ignores, because a call's working tree and carried files must stay
# under 64 MiB and the repository already takes 27 MB:
#   .whl-tests: PyAV (35 MB; training writes its preview videos with it)   -> bench/gpu/session.sh tests
#   .whl-bench: diffusers and importlib_metadata (6 MB; the reference UNet) -> bench/gpu/session.sh bench
# Versions are the ones .venv tests against.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=.venv/bin/python
AV=$($PY -c "import av; print(av.__version__)")
DIFFUSERS=$($PY -c "import diffusers; print(diffusers.__version__)")
for folder in .whl-tests .whl-bench; do
    grep -qx "/$folder/" .git/info/exclude 2>/dev/null || echo "/$folder/" >> .git/info/exclude
    rm -rf "$folder" && mkdir "$folder"
done
fetch() {  # folder, requirement
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$1" "$2"
}
fetch .whl-tests "av==$AV"
fetch .whl-bench "diffusers==$DIFFUSERS"
fetch .whl-bench importlib_metadata
du -sh .whl-tests .whl-bench
