#!/usr/bin/env bash
# The daemon's end-of-speech -> first-token latency on this machine, through real (PulseAudio
# null-sink) devices: the tiny Qwen3-Omni fixture on the CPU engine answers the two espeak
# questions three times; prints each turn's `timing` event. Needs pulseaudio, pulseaudio-utils,
# libasound2-plugins (as CI installs) and a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
D=$(mktemp -d)
export XDG_RUNTIME_DIR=$D/xdg; mkdir -p $XDG_RUNTIME_DIR; chmod 700 $XDG_RUNTIME_DIR
pulseaudio -D --exit-idle-time=-1 -n --load=module-native-protocol-unix 2>/dev/null
trap 'pulseaudio --kill 2>/dev/null; kill %1 %2 2>/dev/null || true' EXIT
sleep 1
pactl load-module module-null-sink sink_name=spk >/dev/null
pactl load-module module-null-sink sink_name=mic >/dev/null
pactl load-module module-remap-source master=mic.monitor source_name=vmic >/dev/null
pactl set-default-sink spk; pactl set-default-source vmic
printf '[mode]\ndefault = "always-on"\n[generation]\ntemperature = 0.0\nsystem_prompt = ""\nmax_tokens = 32\n' > $D/config.toml
target/release/omni serve --model tests/fixtures/omni/tiny --socket $D/s.sock --config $D/config.toml 2>$D/serve.log &
while [ ! -S $D/s.sock ]; do sleep 0.1; done
target/release/omni ctl subscribe --socket $D/s.sock > $D/events.txt &
sleep 0.5
for i in 1 2 3; do
    for q in short long; do paplay --device=mic tests/fixtures/omni/$q.wav; sleep 1.5; done
done
sleep 1
target/release/omni ctl status --socket $D/s.sock
target/release/omni ctl shutdown --socket $D/s.sock >/dev/null
sleep 0.5
grep '"timing"' $D/events.txt
