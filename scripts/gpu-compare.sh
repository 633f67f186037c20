#!/usr/bin/env bash
# Device runs that compare binaries on the same card in one call (session 4's runs A-N):
# the GPU tests, then `omni bench` for each model with each binary, the audio encoder and
# the end of speech -> first token latency. Expects device-bin/ (the binaries named in BINS
# and the test binaries) and .gl/ carried; OUT set. Every step is timed out.
#   BINS     binaries in device-bin/ to compare     (default: "omni-prev omni")
#   MODELS   ";"-separated `--synthetic` arguments (default: 30B-A3B Q8_0; 8B Q8_0; 8B BF16; set
#            empty for none)
#   VARIANTS ';'-separated env settings per bench   (default: "X=1", i.e. none)
#   BENCH    extra bench flags                       (default: 500-token prompt, 128 decoded)
#   TESTS    test binaries to run on the card        (default: none)
#   AUDIO=1  bench-audio 5 s and 30 s per binary;  LATENCY=1  bench-latency 2 s and 5 s per binary
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
BINS=${BINS:-omni-prev omni}
MODELS=${MODELS-qwen3-omni-30b-a3b --quant q8_0;qwen3-8b --quant q8_0;qwen3-8b}
BENCH=${BENCH:---repeats 3 --prompt-len 500 --gen-len 128}
mkdir -p target/release && cp $B/omni target/release/omni
run_gpu_tests ${TESTS:-}
D=$OUT/bench.txt
IFS=';' read -ra MS <<< "$MODELS"
IFS=';' read -ra VS <<< "${VARIANTS:-X=1}"
for m in "${MS[@]}"; do
    for v in "${VS[@]}"; do
        for bin in $BINS; do
            echo "== $bin $v $m" >> $D
            env $v timeout 150 $B/$bin bench --synthetic $m $A $BENCH >> $D 2>&1; echo "exit $?" >> $D
        done
    done
done
if [ -n "${AUDIO:-}${LATENCY:-}" ]; then
    timeout 120 $B/omni synth --preset qwen3-omni-audio --out /tmp/omni-audio > /dev/null 2>&1
fi
for bin in $BINS; do
    if [ -n "${AUDIO:-}" ]; then
        echo "== $bin" >> $OUT/audio.txt
        timeout 100 $B/$bin bench-audio --model /tmp/omni-audio --secs 5,30 --backend gpu --adapter NVIDIA --repeats 3 >> $OUT/audio.txt 2>&1; echo "exit $?" >> $OUT/audio.txt
    fi
    if [ -n "${LATENCY:-}" ]; then
        for s in 2 5; do
            echo "== $bin q8_0 secs $s" >> $OUT/latency.txt
            timeout 100 $B/$bin bench-latency --model /tmp/omni-audio --synthetic qwen3-omni-30b-a3b --quant q8_0 --secs $s --repeats 5 --adapter NVIDIA >> $OUT/latency.txt 2>&1; echo "exit $?" >> $OUT/latency.txt
        done
    fi
done
ls -la $OUT
