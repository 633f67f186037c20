#!/usr/bin/env bash
# A device run (see docs/benchmarks.md): the standard benchmark (scripts/gpu-bench.sh), Q8_0
# copies of the synthetic models, and tuning variants (VARIANTS: env settings, one per run,
# e.g. "OMNI_MATVEC_WG=64 OMNI_Q8_ROWS=2"). Expects device-bin/ and .gl/ carried; OUT set.
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
B=device-bin
BENCH_ARGS="--repeats 3 --gen-len 128" BENCH_TIMEOUT=120 bash scripts/gpu-bench.sh
V=$OUT/variants.txt
for m in qwen3-8b qwen3-0.6b; do
    timeout 150 $B/omni quantize --model /tmp/$m --out /tmp/$m-q8 >> $V 2>&1
    echo "== $m Q8_0 (defaults)" >> $V
    timeout 90 $B/omni bench --model /tmp/$m-q8 --backend gpu --adapter NVIDIA --repeats 3 --gen-len 128 >> $V 2>&1
done
IFS=';' read -ra VS <<< "${VARIANTS:-}"
for v in "${VS[@]}"; do
    for m in qwen3-8b qwen3-8b-q8; do
        echo "== $m $v" >> $V
        env $v timeout 60 $B/omni bench --model /tmp/$m --backend gpu --adapter NVIDIA --repeats 1 --gen-len 64 --prompt-len 128 >> $V 2>&1
    done
done
ls -la $OUT
