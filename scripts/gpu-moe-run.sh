#!/usr/bin/env bash
# Device run for the MoE / Omni figures (docs/benchmarks.md): synthetic Qwen3-Omni-30B-A3B
# thinker decoder (random weights made on the GPU) in Q8_0 and BF16, plus synthetic Qwen3-8B
# Q8_0. Expects device-bin/ and .gl/ carried; OUT set.
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
B=device-bin
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; } > $OUT/devices.txt 2>&1
for q in q8_0 bf16; do
    Q=""; [ $q = q8_0 ] && Q="--quant q8_0"
    timeout 240 $B/omni bench --synthetic qwen3-omni-30b-a3b $Q --backend gpu --adapter NVIDIA --repeats 3 --prompt-len 500 --gen-len 128 ${EXTRA:-} > $OUT/omni-30b-$q.txt 2>&1; echo "exit $?" >> $OUT/omni-30b-$q.txt
done
timeout 120 $B/omni bench --synthetic qwen3-8b --quant q8_0 --backend gpu --adapter NVIDIA --repeats 3 --gen-len 128 > $OUT/qwen3-8b-q8.txt 2>&1; echo "exit $?" >> $OUT/qwen3-8b-q8.txt
