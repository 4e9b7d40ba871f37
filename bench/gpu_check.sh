#!/usr/bin/env bash
# The CUDA path of egoasl, checked in one go on a machine with an NVIDIA GPU (under 8 minutes on
# one H100/H200-class GPU):
#   1. the device tests (tests/test_device.py with EGOASL_TEST_DEVICE=cuda): MQ and NLQ forward,
#      losses and gradients equal to the CPU's, decoding device outputs, the trainer with fp32,
#      bf16 and fp16 (GradScaler) autocast, a GPU checkpoint predicting on the CPU; then the
#      trainer, NMS and decoding tests on the same interpreter;
#   2. full-size MQ (mq/release) training steps in fp32, bf16 and fp16 with peak GPU memory, and
#      inference per clip (bench/bench_mq.py --device cuda);
#   3. torchrun with one process: the DistributedDataParallel path over nccl, training and
#      evaluating the tiny config on synthetic data on the GPU.
# Figures and logs go to $OUT when it is set (else bench/gpu_check_out/): gpu_env.txt, tests.log,
# gpu_results.md, ddp.log.
#
#   bash bench/gpu_check.sh            # exit 0: all passed; 77: no CUDA device here; else the failing step's code
#
# It uses the python3 on PATH as it is (the GPU machine's torch build); the egoasl sources are
# put on PYTHONPATH, nothing is installed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
out=${OUT:-bench/gpu_check_out}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "gpu_check: no CUDA device visible to $PY (torch.cuda.is_available() is False): nothing to check here."
  exit 77
fi

status=0
step() {  # step NAME COMMAND...: run, log the time and the result, remember the first failure
  local name=$1; shift
  local tic=$SECONDS
  echo "== $name"
  "$@"
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - tic)) s"
  if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi
}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "|", torch.cuda.get_device_name(0), "| bf16", torch.cuda.is_bf16_supported())'
  echo "host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
} 2>&1 | tee "$out/gpu_env.txt"

step "device tests" bash -o pipefail -c "EGOASL_TEST_DEVICE=cuda $PY -m pytest -q -p no:cacheprovider tests/test_device.py \
  tests/test_train.py tests/test_decode.py tests/test_nms.py 2>&1 | tee '$out/tests.log'"

step "full-size MQ steps and inference" "$PY" bench/bench_mq.py --device cuda --variants fp32,bf16,fp16 \
  --steps 10 --clips 20 --results "$out/gpu_results.md"

work=$(mktemp -d)
ddp() {
  "$PY" -m egoasl.cli synth --out "$work/data" --scale tiny --videos 10 --seed 0 >/dev/null &&
  "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 -m egoasl.cli train tests/configs/tiny_mq.yaml \
    "data.root=$work/data" train.device=cuda train.amp=bf16 train.epochs=3 train.eval_start_epoch=3 \
    --run-dir "$work/run" --no-progress 2>&1 | tee "$out/ddp.log" &&
  grep -q "process group: nccl" "$out/ddp.log" &&
  test -f "$work/run/checkpoints/last.safetensors"
}
step "torchrun, one process, nccl DDP" ddp
rm -rf "$work"

echo "gpu_check: $([ "$status" -eq 0 ] && echo "all steps passed" || echo "a step failed (exit $status)"); figures in $out"
exit "$status"
