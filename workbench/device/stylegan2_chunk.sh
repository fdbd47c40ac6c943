#!/usr/bin/env bash
# One chunk of GAN2Shape's 128 px demo StyleGAN2 on a lent GPU (issue 21), resumable across chunks.
#
# Run through the device tool from the repository root, as one call:
#     bash workbench/device/stylegan2_chunk.sh          carry: ["runs/g2s_128"] (the last chunk's run)
# What travels must stay under the tool's 64 MiB: this job needs no weights, so move weights/*.safetensors
# and weights/training/ out of the checkout for the call (tracked files that are not there do not
# travel) and put them back after. The renders are made there (about 600 MB, too big to carry);
# the network's checkpoint (about 12 MB: weights in float32, Adam moments in bfloat16), the log and
# the latest sample grid come back under $OUT: copy them into runs/g2s_128/ here before the next chunk.
# CPU check here: OUT=/tmp/chunk DEVICE=cpu CARS=4 MINUTES=0.05 BATCH=4 bash workbench/device/stylegan2_chunk.sh
set -euo pipefail
: "${OUT:?set OUT: the folder the checkpoint, log and samples are copied to}"
mkdir -p "$OUT"
started=$(date +%s)
BUDGET_S=${BUDGET_S:-540}  # the device call's 600 s limit, less the time to copy back and exit
RUN=${RUN:-runs/g2s_128}
CARS=${CARS:-1000}
DATA=runs/g2s_data/car128_${CARS}.npz
MINUTES=${MINUTES:-7}  # at most: the rendering's time comes off it
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-32}
PY=${PY:-python3}
THREADS=$(nproc)

if [ ! -f "$DATA" ]; then
    "$PY" -m workbench.train gan2shape-renders --out "$DATA" --cars "$CARS" --views 12 --size 128 \
        --threads "$THREADS"
fi
left_s=$((BUDGET_S - ($(date +%s) - started) - 60))  # 60 s: loading the renders and the last save
if [ "$left_s" -le 0 ]; then
    echo "rendering took the whole budget: lower CARS or raise BUDGET_S" >&2
    exit 1
fi
MINUTES=$(awk -v s="$left_s" -v m="$MINUTES" 'BEGIN { x = s / 60; if (m < x) x = m; printf "%.2f", x }')
"$PY" -m workbench.train stylegan2 --out "$RUN" --data "$DATA" --size 128 --device "$DEVICE" \
    --batch "$BATCH" --threads "$THREADS" --minutes "$MINUTES" --save-minutes 1 --sample-every 1000 \
    --log-every 50
cp "$RUN/checkpoint.safetensors" "$RUN/log.jsonl" "$OUT/"
latest=$(find "$RUN/samples" -name 'step_*.png' | sort | tail -n 1)
if [ -n "$latest" ]; then cp "$latest" "$OUT/"; fi
tail -n 1 "$RUN/log.jsonl"
