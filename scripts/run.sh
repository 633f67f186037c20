#!/usr/bin/env bash
# Set up and run the main job: build, fetch the real Qwen3 tokenizer, and answer a prompt.
# With MODEL=<dir or HF repo id in the local cache> it runs that model; without, it writes a
# synthetic Qwen3-0.6B (random weights at the real shapes) and runs it, then benchmarks it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release
scripts/setup-test-data.sh
omni=target/release/omni
model="${MODEL:-}"
if [[ -z "$model" ]]; then
    model=target/models/qwen3-0.6b-synth
    if [[ ! -f "$model/model.safetensors" ]]; then
        rm -rf "$model"
        "$omni" synth --preset qwen3-0.6b --out "$model" --tokenizer target/test-data/qwen3-tokenizer/tokenizer.json
    fi
fi
"$omni" info --model "$model"
"$omni" generate --model "$model" --prompt "${PROMPT:-Why is the sky blue?}" --max-tokens 48 --stats
"$omni" bench --model "$model"
