#!/usr/bin/env bash
# Device run: what the card's clocks and power state do while `omni bench` decodes (session 15).
# nvidia-smi samples every SMI_MS ms into $OUT/smi.csv while each bench in MODELS runs twice back
# to back; $OUT/bench.txt holds the benches, with a wall-clock stamp before each.
#   MODELS  ";"-separated `--synthetic` arguments (default: 8B Q8_0)
#   BENCH   extra bench flags (default: --repeats 3 --prompt-len 64 --gen-len 128)
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
MODELS=${MODELS-qwen3-8b --quant q8_0}
BENCH=${BENCH:---repeats 3 --prompt-len 64 --gen-len 128}
nvidia-smi -q -d CLOCK,PERFORMANCE,POWER > $OUT/smi-before.txt 2>&1
nvidia-smi --query-gpu=timestamp,pstate,clocks.sm,clocks.mem,power.draw,utilization.gpu,clocks_event_reasons.active \
    --format=csv -lms ${SMI_MS:-20} > $OUT/smi.csv 2>&1 &
P=$!
sleep 2
D=$OUT/bench.txt
IFS=';' read -ra MS <<< "$MODELS"
for m in "${MS[@]}"; do
    for pass in 1 2; do
        echo "== pass $pass $m $(date -u +%H:%M:%S.%N)" >> $D
        timeout 150 $B/omni bench --synthetic $m $A $BENCH >> $D 2>&1; echo "exit $? $(date -u +%H:%M:%S.%N)" >> $D
    done
done
sleep 1
kill $P
nvidia-smi -q -d CLOCK,PERFORMANCE,POWER > $OUT/smi-after.txt 2>&1
