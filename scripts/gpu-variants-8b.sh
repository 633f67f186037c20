for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
for v in "X=1" "OMNI_MATVEC_ROWS=3" "OMNI_MATVEC_ROWS=3 OMNI_MATVEC_WG=128" "X=2" "OMNI_Q8_ROWS=2"; do
  echo "== $v" >> $OUT/v.txt
  env $v timeout 90 device-bin/omni bench --synthetic qwen3-8b --backend gpu --adapter NVIDIA --repeats 3 --gen-len 128 --prompt-len 64 >> $OUT/v.txt 2>&1
done
for v in "X=1" "OMNI_Q8_ROWS=2"; do
  echo "== q8 $v" >> $OUT/v.txt
  env $v timeout 90 device-bin/omni bench --synthetic qwen3-8b --quant q8_0 --backend gpu --adapter NVIDIA --repeats 3 --gen-len 128 --prompt-len 64 >> $OUT/v.txt 2>&1
done
