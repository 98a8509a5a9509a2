#!/usr/bin/env bash
# Fetch the emoji pictures that chapter 06d reads (meru_nb.emoji): the npm packages
# emoji-datasource-<vendor> at a pinned version, each checked against the sha512 integrity that
# the npm registry published for it. Python never downloads; this script is the only fetch.
#
# Usage: tools/emoji_data.sh [folder]      (default: data/emoji, which git ignores)
set -euo pipefail

VERSION=16.0.0
VENDORS=(google twitter facebook)
declare -A INTEGRITY=(
  [google]='sha512-ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A=='
  [twitter]='sha512-7F+uCuHH+7Qnrc15P5tnbvKkg9E6tlzi4MnT2uW1RlN4pLYTza6cP/dstIfSDMtpjFLWuZewWg8jBbuL2eyELQ=='
  [facebook]='sha512-b9ZxJdB7nMWGckH1vyCjPSosaa6MJYuojPPFiQ0LmDIZS8vlG454XKcmTFKrXIMAA72O4MRJMYFhvWI8pjyciQ=='
)
OUT=${1:-data/emoji}

if ! command -v npm >/dev/null 2>&1; then
  echo "emoji_data.sh: npm not found: install Node.js and npm, or unpack an emoji-datasource-<vendor> package yourself and pass its folder to meru_nb.emoji.read_emoji" >&2
  exit 1
fi
for tool in openssl base64; do
  command -v "$tool" >/dev/null 2>&1 || { echo "emoji_data.sh: $tool not found: it is needed to check the packages' sha512 integrity" >&2; exit 1; }
done

mkdir -p "$OUT"
for vendor in "${VENDORS[@]}"; do
  file="$OUT/emoji-datasource-$vendor-$VERSION.tgz"
  if [[ ! -f $file ]]; then
    npm pack --silent --pack-destination "$OUT" "emoji-datasource-$vendor@$VERSION" >/dev/null
  fi
  got="sha512-$(openssl dgst -sha512 -binary "$file" | base64 -w0)"
  if [[ $got != "${INTEGRITY[$vendor]}" ]]; then
    rm -f "$file"
    echo "emoji_data.sh: $file does not match its pinned sha512 integrity (got $got); it was removed, run again" >&2
    exit 1
  fi
  echo "$file: sha512 integrity checked"
done
