#!/usr/bin/env bash
# The project's test command: fetch the test data (real Qwen3 tokenizer, checksummed), then
# run every test. GPU tests need a Vulkan adapter (lavapipe is enough: mesa-vulkan-drivers);
# they fail without one. Fixtures are committed; see tests/fixtures/README.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup-test-data.sh
# lavapipe warns without a runtime dir
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/omni-xdg-$(id -u)"
    mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi
cargo test "$@"
# the build without sound devices (headless GPU servers: no cpal, no ALSA) must keep compiling
cargo check --no-default-features --all-targets
