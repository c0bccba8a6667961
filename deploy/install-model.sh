#!/usr/bin/env bash
# Installs a Whisper model for Rushes workers from a local model directory:
#
#   deploy/install-model.sh NAME DIR
#
# NAME is what admins choose in the `whisper_model` setting (tiny, tiny.en, base,
# base.en, small, small.en, medium, medium.en, large-v3, turbo); DIR holds the model in
# Hugging Face format (config.json, tokenizer.json, model.safetensors) or faster-whisper /
# CTranslate2 format (config.json, model.bin, tokenizer.json, vocabulary.*) — e.g. a
# faster-whisper download under ~/.cache/huggingface/hub/models--Systran--faster-whisper-small/snapshots/*/.
# The model is copied to $RUSHES_WHISPER_MODEL_DIR/NAME (default $RUSHES_DATA_DIR/models,
# /var/lib/rushes/models). Idempotent: an identical copy is left alone.

set -euo pipefail

if [ $# -ne 2 ]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi
name="$1"
source_dir="$2"
case "$name" in
    */* | .* | "") echo "model name must be a plain name like small or tiny.en, got '$name'" >&2; exit 2 ;;
esac
[ -d "$source_dir" ] || { echo "no such directory: $source_dir" >&2; exit 1; }
[ -f "$source_dir/config.json" ] || { echo "$source_dir has no config.json" >&2; exit 1; }
[ -f "$source_dir/tokenizer.json" ] || { echo "$source_dir has no tokenizer.json" >&2; exit 1; }
if [ -f "$source_dir/model.safetensors" ]; then
    format="Hugging Face"
elif [ -f "$source_dir/model.bin" ]; then
    format="CTranslate2"
else
    echo "$source_dir has neither model.safetensors (Hugging Face) nor model.bin (CTranslate2)" >&2
    exit 1
fi

models="${RUSHES_WHISPER_MODEL_DIR:-${RUSHES_DATA_DIR:-/var/lib/rushes}/models}"
target="$models/$name"
if [ -d "$target" ] && diff -rq "$source_dir" "$target" >/dev/null 2>&1; then
    echo "$name is already installed in $target"
    exit 0
fi
mkdir -p "$models"
staging="$(mktemp -d "$models/.install-$name.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
cp -rL "$source_dir"/. "$staging"/
rm -rf "$target"
mv "$staging" "$target"
trap - EXIT
echo "installed $name ($format) in $target; choose it with PATCH /api/v1/settings {\"whisper_model\": \"$name\"}"
