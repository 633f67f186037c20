for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
B=device-bin
BENCH_ARGS="--repeats 3 --gen-len 128" BENCH_TIMEOUT=120 bash scripts/gpu-bench.sh
V=$OUT/variants.txt
timeout 150 $B/omni quantize --model /tmp/qwen3-8b --out /tmp/qwen3-8b-q8 > $V 2>&1
for r in 2 4; do echo "== BF16 OMNI_MATVEC_ROWS=$r" >> $V; OMNI_MATVEC_ROWS=$r timeout 60 $B/omni bench --model /tmp/qwen3-8b --backend gpu --adapter NVIDIA --repeats 1 --gen-len 64 --prompt-len 128 >> $V 2>&1; done
for r in 1 2 3 4; do echo "== Q8 OMNI_Q8_ROWS=$r" >> $V; OMNI_Q8_ROWS=$r timeout 60 $B/omni bench --model /tmp/qwen3-8b-q8 --backend gpu --adapter NVIDIA --repeats 1 --gen-len 64 --prompt-len 128 >> $V 2>&1; done
echo "== 0.6B Q8" >> $V; timeout 60 $B/omni quantize --model /tmp/qwen3-0.6b --out /tmp/qwen3-0.6b-q8 >/dev/null 2>&1; timeout 60 $B/omni bench --model /tmp/qwen3-0.6b-q8 --backend gpu --adapter NVIDIA --repeats 2 >> $V 2>&1
ls -la $OUT
