#!/usr/bin/env bash
# Benchmark commands of the paper (Table 1) for every LoRAT variant, then analysis and submission packing.
# Usage: bash ytest.sh                  (all variants)
#        VARIANTS="base_224" THREADS=4 NUM_GPUS=2 bash ytest.sh
#        EXTRA="--backbone_weights pretrained/dinov2_vitb14_pretrain.pth" bash ytest.sh   (extra test.py flags)
# Every test.py command is resumable: rerun this script after an interruption.
set -euo pipefail

VARIANTS=${VARIANTS:-"base_224 base_378 large_224 large_378 giant_224 giant_378"}
THREADS=${THREADS:-2}
NUM_GPUS=${NUM_GPUS:-1}
DEVICE=${DEVICE:-cuda}
EXTRA=${EXTRA:-}
RUN="--threads ${THREADS} --num_gpus ${NUM_GPUS} --device ${DEVICE} ${EXTRA}"

for cfg in ${VARIANTS}; do
  # Full protocol (trained on LaSOT + TrackingNet + GOT-10k + COCO).
  python tracking/test.py lorat "${cfg}" --dataset_name lasot ${RUN}
  for run in 0 1 2; do  # LaSOT-ext: mean of 3 runs, as upstream
    python tracking/test.py lorat "${cfg}" --dataset_name lasot_extension_subset --runid ${run} ${RUN}
  done
  python tracking/test.py lorat "${cfg}" --dataset_name trackingnet ${RUN}
  python tracking/test.py lorat "${cfg}" --dataset_name tnl2k ${RUN}
  # GOT-10k protocol (trained on GOT-10k train only): 3 runs packed as _001.._003.
  for run in 0 1 2; do
    python tracking/test.py lorat "${cfg}_got10k" --dataset_name got10k_test --runid ${run} ${RUN}
  done
done

for cfg in ${VARIANTS}; do
  python tracking/analysis_results.py --script lorat --config "${cfg}" --dataset lasot \
    --json "output/test/scores/${cfg}_lasot.json" --plot
  python tracking/analysis_results.py --script lorat --config "${cfg}" --dataset lasot_extension_subset \
    --run_ids 0 1 2 --json "output/test/scores/${cfg}_lasot_extension_subset.json" --plot
  python tracking/analysis_results.py --script lorat --config "${cfg}" --dataset tnl2k \
    --json "output/test/scores/${cfg}_tnl2k.json" --plot
  python tracking/pack_results.py --script lorat --config "${cfg}" --dataset trackingnet
  python tracking/pack_results.py --script lorat --config "${cfg}_got10k" --dataset got10k_test --run_ids 0 1 2
done
