#!/usr/bin/env bash
# The paper's training runs: 8 GPUs on one node, global batch 128 (16 per GPU), 170 epochs
# (100 for the GOT-10k protocol). Rerunning a line resumes it. Expects pretrained/dinov2_vit{b,l,g}14_pretrain.pth
# and the datasets named in lib/train/admin/local.py. Pass one or more config names to run only those.
set -euo pipefail
cd "$(dirname "$0")"

NPROC=${NPROC:-8}
SCRIPT=${SCRIPT:-lorat}  # experiments/<script>/: lorat, lorat_ablation (Tables 4-6), lorat_timm (Table 9), loratv2
CONFIGS=("$@")
if [ ${#CONFIGS[@]} -eq 0 ]; then
  CONFIGS=(base_224 base_378 large_224 large_378 giant_224 giant_378
           base_224_got10k base_378_got10k large_224_got10k large_378_got10k giant_224_got10k giant_378_got10k)
fi
# Full fine-tuning baselines (paper Table 3): base_224_fft base_378_fft large_224_fft large_378_fft
#
# The paper's ablations (experiments/lorat_ablation/, trained on the full protocol like the main configs; every
# large_* has a base_* twin for cheaper runs, except the Table 5 configs):
# Table 4, PEFT methods (LoRA r=64 on everything is lorat/large_224, full fine-tuning lorat/large_224_fft):
#   SCRIPT=lorat_ablation bash xtrain.sh large_224_adapter large_224_vpt5 large_224_vpt10 large_224_ia3 \
#     large_224_lora_qv_r4 large_224_lora_r16
#   LoRA placement and init: large_224_lora_qkvo large_224_lora_mlp large_224_lora_qv_r64 \
#     large_224_lora_init_kaiming large_224_lora_init_gaussian
# Table 5, input embeddings (scheme 5 is lorat/large_{224,378}[_fft]):
#   SCRIPT=lorat_ablation bash xtrain.sh large_224_emb_sinusoidal large_224_emb_separate large_224_emb_shared_types \
#     large_224_emb_separate_types_fg, the same four at 378 (large_378_emb_*), and each with _fft
# Table 6, modules (each also with _fft):
#   SCRIPT=lorat_ablation bash xtrain.sh large_224_smam large_224_convhead large_224_ostrackhead \
#     large_224_smam_fft large_224_convhead_fft large_224_ostrackhead_fft
# Table 9, backbones from timm weight files in pretrained/ (B-224 full fine-tuning in the paper):
#   SCRIPT=lorat_timm bash xtrain.sh base_224_dinov2_fft base_256_mae_fft base_256_clip_fft base_224_eva02_fft \
#     base_224_dinov2 base_256_mae base_256_clip base_224_eva02
#   EVA-02 L/14 (timm's eva02_large_patch14_224.mim_in22k): SCRIPT=lorat_timm bash xtrain.sh large_224_eva02 \
#     large_224_eva02_fft
#
# LoRATv2 (experiments/loratv2/, docs/loratv2.md), two runs per variant: phase 1 (template + 224 search stream), then
# phase 2 (a new 378 search stream on the frozen phase-1 experts) from phase 1's final checkpoint. Variants: base,
# large, base_got10k, large_got10k (GOT-10k protocol). Expects pretrained/dinov2_vit{b,l}14_reg4_pretrain.pth.
#   SCRIPT=loratv2 bash xtrain.sh                 (all four)
#   SCRIPT=loratv2 bash xtrain.sh base large
if [ "$SCRIPT" = loratv2 ]; then
  VARIANTS=("$@")
  if [ ${#VARIANTS[@]} -eq 0 ]; then
    VARIANTS=(base large base_got10k large_got10k)
  fi
  for variant in "${VARIANTS[@]}"; do
    size=${variant%%_*}; protocol=${variant#"$size"}  # base_got10k -> base, _got10k
    phase1=p1_${size}_224${protocol}; phase2=p2_${size}_378${protocol}
    python tracking/train.py --script loratv2 --config "$phase1" --save_dir ./output --mode multiple \
      --nproc_per_node "$NPROC"
    python tracking/train.py --script loratv2 --config "$phase2" --save_dir ./output --mode multiple \
      --nproc_per_node "$NPROC" --init_checkpoint "output/checkpoints/train/loratv2/$phase1/${phase1}_final.pth"
  done
  exit 0
fi

for cfg in "${CONFIGS[@]}"; do
  python tracking/train.py --script "$SCRIPT" --config "$cfg" --save_dir ./output --mode multiple --nproc_per_node "$NPROC"
done
