#!/usr/bin/env bash
# One lent-GPU session: the Triton backend's correctness tests on the device, a dump check (the
# ttir/ptx stages of a real compile), whole steps at 2^15 rows against NumPy, then
# benchmarks/gpu_step.py. Logs and JSON go to $OUT.
#   OUT=/tmp/out bash benchmarks/gpu_check.sh        (env: TEST_TIMEOUT BENCH_TIMEOUT BUDGET BATCHES)
set -u
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 MLPC_CACHE_DIR=/tmp/mlpc_cache PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.sm --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton, numpy; print('torch', torch.__version__, 'triton', triton.__version__, 'numpy', numpy.__version__)" | tee -a "$OUT/gpu.txt"
XD=""
python3 -c "import xdist" 2>/dev/null && XD="-n 8"
echo "== tests ($XD)"
timeout "${TEST_TIMEOUT:-150}" python3 -m pytest -q -p no:cacheprovider $XD \
  tests/codegen/test_triton_kernels.py tests/runtime/test_triton_step.py tests/runtime/test_triton_models.py \
  > "$OUT/tests.log" 2>&1
echo "tests rc=$?"; tail -25 "$OUT/tests.log"
echo "== dump"
timeout 90 python3 - > "$OUT/dump.log" 2>&1 <<'PY'
import numpy as np, mlpc
from mlpc import nn, optim
t = mlpc.compile(nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)), optimizer=optim.Adam(),
                 batch_size=512, backend="triton")
rng = np.random.default_rng(0)
x, y = rng.standard_normal((512, 784)).astype(np.float32), rng.integers(0, 10, 512)
losses = [t.step(x, y) for _ in range(5)]
print("losses", losses)
for s in ("kernels", "triton", "ttir", "ptx"):
    print(s, len(t.ir(s)))
ptx = t.ir("ptx")
print("sm_90a", ".target sm_90a" in ptx, "wgmma", "wgmma" in ptx)
print(t.ir("kernels"))
PY
echo "dump rc=$?"; tail -22 "$OUT/dump.log"
echo "== large-batch correctness"
timeout 90 python3 benchmarks/gpu_big_check.py 15 > "$OUT/big.log" 2>&1
echo "big rc=$?"; grep -v Warn "$OUT/big.log" | tail -6
echo "== benchmark"
timeout "${BENCH_TIMEOUT:-300}" python3 benchmarks/gpu_step.py --batches ${BATCHES:-10 14 18} \
  --budget-s "${BUDGET:-200}" ${BENCH_ARGS:-} --json "$OUT/gpu_step.json" > "$OUT/bench.log" 2>&1
echo "bench rc=$?"; grep -v '^{' "$OUT/bench.log" | tail -40
