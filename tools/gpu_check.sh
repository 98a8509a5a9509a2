#!/usr/bin/env bash
# The GPU check on a machine that reaches no package index (chapter 14):
#   bash tools/gpu_check.sh --wheels wheels --out gpu_check.json [-- meru-nb gpu-check options]
# installs the wheel folder made by `make wheels` with `pip install --no-index --no-deps` into a folder of its
# own, puts it first on PYTHONPATH (the machine's torch and other packages are never touched), and runs
# `meru-nb gpu-check` from outside the checkout, so that the installed meru_nb is the one measured.
set -euo pipefail
usage() { echo "usage: bash tools/gpu_check.sh --wheels DIR --out FILE.json [-- gpu-check options]" >&2; exit 2; }
wheels=""; out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) wheels="${2:-}"; shift 2 || usage ;;
    --out) out="${2:-}"; shift 2 || usage ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
[ -n "$wheels" ] && [ -n "$out" ] || usage
python="${PYTHON:-python3}"
if ! compgen -G "$wheels/*.whl" >/dev/null; then
  echo "gpu_check.sh: no wheels in '$wheels' (make wheels builds them)" >&2; exit 2
fi
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
site="${out%.json}_site"
rm -rf "$site"
tic=$(date +%s)
if "$python" -m pip --version >/dev/null 2>&1; then
  "$python" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --target "$site" "$wheels"/*.whl
else   # no pip there: a wheel is a zip whose root is what goes on the path
  echo "gpu_check.sh: $python has no pip; unpacking the wheels instead" >&2
  "$python" -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' "$site" "$wheels"/*.whl
fi
echo "gpu_check.sh: installed $(ls "$wheels"/*.whl | wc -l) wheels into $site in $(( $(date +%s) - tic )) s"
cd "$site"
PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" "$python" -m meru_nb.cli gpu-check --out "$out" "$@"
