# Sourced by the device scripts (scripts/gpu-*.sh) on the GPU machine, in the repository root
# with .gl/ and device-bin/ carried and OUT set: the Vulkan loader and libasound from .gl/,
# the NVIDIA ICD, B (the binaries) and A (the bench flags), the card in $OUT/devices.txt, and
# run_gpu_tests NAME... (test binaries on the card into $OUT/tests.txt, each timed out).
for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
B=device-bin
A="--backend gpu --adapter NVIDIA"
# the tests find their fixtures under /work/main, as on the development machine
[ -e /work/main/tests ] || { mkdir -p /work && ln -sfn "$PWD" /work/main; }
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; } > $OUT/devices.txt 2>&1

run_gpu_tests() {
    for t in "$@"; do
        [ -x $B/$t ] || continue
        echo "== $t" >> $OUT/tests.txt
        OMNI_TEST_ADAPTER=NVIDIA timeout 120 $B/$t --test-threads=1 >> $OUT/tests.txt 2>&1
        echo "exit $?" >> $OUT/tests.txt
    done
}
