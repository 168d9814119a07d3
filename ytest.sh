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

# The paper's ablations report LaSOT (Tables 4, 6, 9) and LaSOT, LaSOT-ext, TNL2K (Table 5); run them with
#   ABLATIONS="large_224_adapter large_224_ia3" bash ytest.sh      (experiments/lorat_ablation/ configs)
#   TIMM="base_256_mae_fft base_256_clip_fft" bash ytest.sh          (experiments/lorat_timm/ configs)
# Table 4: large_224_adapter large_224_vpt5 large_224_vpt10 large_224_ia3 large_224_lora_qv_r4 large_224_lora_r16
#          (+ large_224_lora_qkvo large_224_lora_mlp large_224_lora_qv_r64 large_224_lora_init_{kaiming,gaussian})
# Table 5: large_{224,378}_emb_{sinusoidal,separate,shared_types,separate_types_fg}[_fft]
# Table 6: large_224_{smam,convhead,ostrackhead}[_fft]
# Table 9: base_224_dinov2[_fft] base_256_mae[_fft] base_256_clip[_fft] base_224_eva02[_fft]
#          (+ large_224_dinov2 large_256_mae large_224_clip large_224_eva02, each [_fft])
# Set VARIANTS="" to run only those.
# LoRATv2 (experiments/loratv2/, trained by SCRIPT=loratv2 bash xtrain.sh): LoRATV2="p2_base_378 p2_large_378"
# (phase-1 configs work too). Upstream's suite is LaSOT, TNL2K and VastTrack, one run each; LaSOT-ext (3 runs) and
# GOT-10k test (the <config>_got10k model, 3 runs) are ours. The phase-2 final checkpoint is self-contained (it holds
# the frozen phase-1 experts). Set VARIANTS="" to run only those.
ABLATIONS=${ABLATIONS:-}
TIMM=${TIMM:-}
LORATV2=${LORATV2:-}
for pair in $(for c in ${ABLATIONS}; do echo "lorat_ablation:$c"; done; for c in ${TIMM}; do echo "lorat_timm:$c"; done); do
  script=${pair%%:*}; cfg=${pair#*:}
  python tracking/test.py "${script}" "${cfg}" --dataset_name lasot ${RUN}
  python tracking/analysis_results.py --script "${script}" --config "${cfg}" --dataset lasot \
    --json "output/test/scores/${script}_${cfg}_lasot.json"
  case "${cfg}" in *_emb_*)
    for dataset in lasot_extension_subset tnl2k; do
      python tracking/test.py "${script}" "${cfg}" --dataset_name ${dataset} ${RUN}
      python tracking/analysis_results.py --script "${script}" --config "${cfg}" --dataset ${dataset} \
        --json "output/test/scores/${script}_${cfg}_${dataset}.json"
    done;;
  esac
done

for cfg in ${LORATV2}; do
  for dataset in lasot tnl2k vasttrack; do
    python tracking/test.py loratv2 "${cfg}" --dataset_name ${dataset} ${RUN}
    python tracking/analysis_results.py --script loratv2 --config "${cfg}" --dataset ${dataset} \
      --json "output/test/scores/loratv2_${cfg}_${dataset}.json"
  done
  for run in 0 1 2; do
    python tracking/test.py loratv2 "${cfg}" --dataset_name lasot_extension_subset --runid ${run} ${RUN}
    python tracking/test.py loratv2 "${cfg}_got10k" --dataset_name got10k_test --runid ${run} ${RUN}
  done
  python tracking/analysis_results.py --script loratv2 --config "${cfg}" --dataset lasot_extension_subset \
    --run_ids 0 1 2 --json "output/test/scores/loratv2_${cfg}_lasot_extension_subset.json"
  python tracking/pack_results.py --script loratv2 --config "${cfg}_got10k" --dataset got10k_test --run_ids 0 1 2
done

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
