#!/usr/bin/env bash
# The paper's training runs: 8 GPUs on one node, global batch 128 (16 per GPU), 170 epochs
# (100 for the GOT-10k protocol). Rerunning a line resumes it. Expects pretrained/dinov2_vit{b,l,g}14_pretrain.pth
# and the datasets named in lib/train/admin/local.py. Pass one or more config names to run only those.
set -euo pipefail
cd "$(dirname "$0")"

NPROC=${NPROC:-8}
CONFIGS=("$@")
if [ ${#CONFIGS[@]} -eq 0 ]; then
  CONFIGS=(base_224 base_378 large_224 large_378 giant_224 giant_378
           base_224_got10k base_378_got10k large_224_got10k large_378_got10k giant_224_got10k giant_378_got10k)
fi
# Full fine-tuning baselines (paper Table 3): base_224_fft base_378_fft large_224_fft large_378_fft

for cfg in "${CONFIGS[@]}"; do
  python tracking/train.py --script lorat --config "$cfg" --save_dir ./output --mode multiple --nproc_per_node "$NPROC"
done
