#!/usr/bin/env bash
# Session 5: `omni quantize` against the disk on the device machine (16 cores): a synthetic
# Qwen3-4B BF16 directory, its file's cold sequential read rate (dd, page cache dropped with
# iflag=nocache), then the converter cold (input dropped from the cache first) and warm.
source "$(dirname "${BASH_SOURCE[0]}")/device-prelude.sh"
D=$OUT/convert.txt
{ nproc; df -h /tmp | tail -1; } >> $D
( time $B/omni synth --preset qwen3-4b --out /tmp/s4b ) >> $D 2>&1
ls -la /tmp/s4b >> $D
F=/tmp/s4b/model.safetensors
[ -f $F ] || F=$(ls /tmp/s4b/*.safetensors | head -1)
for i in 1 2 3; do
    for f in /tmp/s4b/*.safetensors; do dd if=$f iflag=nocache count=0 status=none; done
    echo "== dd cold $i" >> $D
    cat /tmp/s4b/*.safetensors | dd of=/dev/null bs=16M 2>> $D
done
for i in 1 2 3; do
    for f in /tmp/s4b/*.safetensors; do dd if=$f iflag=nocache count=0 status=none; done
    rm -rf /tmp/s4b-q8; sync
    echo "== quantize cold $i" >> $D
    timeout 200 $B/omni quantize --model /tmp/s4b --out /tmp/s4b-q8 >> $D 2>&1
done
for i in 1 2; do
    rm -rf /tmp/s4b-q8; sync
    echo "== quantize warm $i" >> $D
    timeout 200 $B/omni quantize --model /tmp/s4b --out /tmp/s4b-q8 >> $D 2>&1
done
echo "== dd warm" >> $D
cat /tmp/s4b/*.safetensors | dd of=/dev/null bs=16M 2>> $D
