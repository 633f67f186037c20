#!/usr/bin/env bash
# Session 3, run 9: the BF16 router matvec's shape at Qwen3-Omni-30B-A3B Q8_0 (in a Q8_0 model
# it is the only 16-bit matvec, so the 16-bit tuning knobs reach it alone).
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
V=$OUT/variants.txt
for v in "X=1" "OMNI_MATVEC_ROWS=1" "OMNI_MATVEC_WG=64" "OMNI_MATVEC_ROWS=1 OMNI_MATVEC_WG=64" "OMNI_MATVEC_WG=128" "X=1"; do
    echo "== $v" >> $V
    env $v timeout 150 $B/omni bench --synthetic qwen3-omni-30b-a3b --quant q8_0 --backend gpu --adapter NVIDIA --repeats 3 --prompt-len 64 --gen-len 128 >> $V 2>&1; echo "exit $?" >> $V
done
ls -la $OUT
