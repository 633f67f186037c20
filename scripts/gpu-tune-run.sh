#!/usr/bin/env bash
# A device run (see docs/benchmarks.md): the standard benchmark (scripts/gpu-bench.sh) plus
# Q8_0 variants of Qwen3-8B and Qwen3-0.6B. Expects device-bin/ and .gl/ carried; OUT set.
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
B=device-bin
BENCH_ARGS="--repeats 3 --gen-len 128" BENCH_TIMEOUT=120 bash scripts/gpu-bench.sh
V=$OUT/variants.txt
for m in qwen3-8b qwen3-0.6b; do
    timeout 150 $B/omni quantize --model /tmp/$m --out /tmp/$m-q8 >> $V 2>&1
    echo "== $m Q8_0 ${Q8_ENV:-}" >> $V
    env ${Q8_ENV:-X=1} timeout 90 $B/omni bench --model /tmp/$m-q8 --backend gpu --adapter NVIDIA --repeats 3 --gen-len 128 >> $V 2>&1
done
ls -la $OUT
