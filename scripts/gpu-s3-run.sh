#!/usr/bin/env bash
# Session 3's device runs: GPU kernel tests on the card, then decode-tuning variants (env
# settings separated by ';') on synthetic Qwen3-8B (V8) and Qwen3-Omni-30B-A3B (V30), with the
# host's record / submit time per step. Expects device-bin/ and .gl/ carried; OUT set.
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
run_gpu_tests ${TESTS:-gpu_kernels gpu_moe}
V=$OUT/variants-8b.txt
[ -n "${BF16:-}" ] && { echo "== bf16 defaults" >> $V; timeout 120 $B/omni bench --synthetic qwen3-8b $A --repeats 3 --gen-len 128 --prompt-len 64 >> $V 2>&1; }
IFS=';' read -ra VS <<< "${V8:-X=1}"
for v in "${VS[@]}"; do
    echo "== q8_0 $v" >> $V
    env $v timeout 120 $B/omni bench --synthetic qwen3-8b --quant q8_0 $A --repeats 3 --gen-len 128 --prompt-len 64 >> $V 2>&1
done
M=$OUT/variants-30b.txt
IFS=';' read -ra VS <<< "${V30:-X=1}"
for v in "${VS[@]}"; do
    echo "== q8_0 $v" >> $M
    env $v timeout 200 $B/omni bench --synthetic qwen3-omni-30b-a3b --quant q8_0 $A --repeats 3 --prompt-len 500 --gen-len 128 >> $M 2>&1
done
ls -la $OUT
