#!/usr/bin/env bash
# One prepared run on a lent GPU machine (issue 12): install, check and measure in one call,
# within one command's 10 minutes. Prepared on a machine without a GPU and not yet run on one.
#
# Here, once (the GPU machine reaches no registry; .gpu/ is kept out of git by
# .git/info/exclude and travels with `carry`):
#   mkdir -p .gpu && echo /.gpu/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#     -d .gpu/wheels lmdb "protobuf==$(python -c 'import google.protobuf as p; print(p.__version__)')"
#   for f in data/mnist/*-ubyte; do gzip -c "$f" > ".gpu/$(basename "$f").gz"; done
# Then the device tool: run(command="bash tools/gpu_session.sh", carry=[".gpu"], timeout_s=600)
# Results land in $OUT: summary.txt (the figures), tests.txt, bench.txt, train.txt.
#
# The machine's image has CuPy (cupy-cuda13x), PyTorch, numpy, pytest, h5py, pandas,
# matplotlib, pillow, pyyaml and threadpoolctl; a venv over it adds lmdb and our protobuf.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
say() { echo "$*" | tee -a "$SUMMARY"; }
started=$(date +%s)
elapsed() { echo $(( $(date +%s) - started )); }

say "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$SUMMARY"
python3 -m venv --system-site-packages /tmp/venv && . /tmp/venv/bin/activate
pip install -q --no-index --find-links .gpu/wheels lmdb protobuf 2>&1 | tail -2
pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2
python - <<'EOF' 2>&1 | tee -a "$SUMMARY"
import cupy, numpy, torch
from pipeline_lib.core import backend
print("cupy", cupy.__version__, "numpy", numpy.__version__, "torch", torch.__version__,
      "gpu_available", backend.gpu_available(),
      cupy.cuda.runtime.getDeviceProperties(0)["name"].decode())
EOF

say "== MNIST into LMDB ($(elapsed) s)"
mkdir -p data/mnist
for set in train:train t10k:test; do
  timeout 120 python -m pipeline_lib.data convert-mnist ".gpu/${set%%:*}-images-idx3-ubyte.gz" \
    ".gpu/${set%%:*}-labels-idx1-ubyte.gz" "data/mnist/mnist_${set##*:}_lmdb" 2>&1 | tail -1
done

say "== every test marked gpu: CuPy forward/backward and gradient checks ($(elapsed) s)"
# about 870 test cases (every layer on CuPy): 8 processes share the GPU when xdist is there
workers=$(python -c "import xdist" 2>/dev/null && echo "-n 8")
timeout 240 python -m pytest -q -p no:cacheprovider -m gpu -rfE $workers > "$OUT/tests.txt" 2>&1
tail -1 "$OUT/tests.txt" | tee -a "$SUMMARY"
grep -E "^(FAILED|ERROR)" "$OUT/tests.txt" | head -20 | tee -a "$SUMMARY"

say "== LeNet step, ours and PyTorch taking turns on the GPU ($(elapsed) s)"
timeout 90 python bench/lenet_train.py --gpu --iterations 500 > "$OUT/bench.txt" 2>&1
grep -E "pipeline_lib|PyTorch|ours /" "$OUT/bench.txt" | tee -a "$SUMMARY"

say "== CaffeNet forward+backward, batch 256, dummy data ($(elapsed) s)"
timeout 90 pcaffe time -model models/caffenet/train_val.prototxt --dummy-data 3,227,227 \
  -iterations 5 -gpu 0 >> "$OUT/bench.txt" 2>&1
grep -E "^forward-backward" "$OUT/bench.txt" | tee -a "$SUMMARY"

say "== LeNet 10,000 iterations on the GPU, twice, then resumed from 5,000 ($(elapsed) s)"
for run in a b; do
  left=$(( 570 - $(elapsed) ))
  [ "$left" -gt 30 ] || { say "no time left for run $run"; break; }
  s=$(date +%s)
  timeout "$left" pcaffe train -solver models/lenet/lenet_solver.prototxt -gpu 0 \
    --output "results/$run/lenet_iter_10000" >> "$OUT/train.txt" 2>&1
  say "run $run: rc $? in $(( $(date +%s) - s )) s"
done
left=$(( 570 - $(elapsed) ))
if [ "$left" -gt 30 ] && [ -f results/a/lenet_iter_10000.snapshots/lenet_iter_5000.solverstate ]; then
  s=$(date +%s)
  timeout "$left" pcaffe train -solver models/lenet/lenet_solver.prototxt -gpu 0 \
    -snapshot results/a/lenet_iter_10000.snapshots/lenet_iter_5000.solverstate \
    --output results/r/lenet_iter_10000 >> "$OUT/train.txt" 2>&1
  say "resumed run: rc $? in $(( $(date +%s) - s )) s"
fi
sha256sum results/*/lenet_iter_10000.caffemodel 2>&1 | tee -a "$SUMMARY"
for run in a b r; do
  tail -1 "results/$run/lenet_iter_10000_metrics.csv" 2>/dev/null | sed "s/^/$run final test row: /" \
    | tee -a "$SUMMARY"
done
say "== done in $(elapsed) s"
