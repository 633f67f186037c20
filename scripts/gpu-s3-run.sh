#!/usr/bin/env bash
# Session 3's device runs: GPU kernel tests on the card, then decode-tuning variants (env
# settings separated by ';') on synthetic Qwen3-8B (V8) and Qwen3-Omni-30B-A3B (V30), with the
# host's record / submit time per step. Expects device-bin/ and .gl/ carried; OUT set.
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
B=device-bin
A="--backend gpu --adapter NVIDIA"
[ -e /work/main/tests ] || { mkdir -p /work && ln -sfn "$PWD" /work/main; }
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; } > $OUT/devices.txt 2>&1
T=$OUT/tests.txt
for t in ${TESTS:-gpu_kernels gpu_moe}; do
    [ -x $B/$t ] || continue
    echo "== $t" >> $T
    OMNI_TEST_ADAPTER=NVIDIA timeout 120 $B/$t --test-threads=1 >> $T 2>&1; echo "exit $?" >> $T
done
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
