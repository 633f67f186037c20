#!/usr/bin/env bash
# The project's test command: fetch the test data (real Qwen3 tokenizer, checksummed), then
# run every test. Fixtures are committed; see tests/fixtures/README.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup-test-data.sh
cargo test "$@"
