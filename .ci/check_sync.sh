#!/usr/bin/env bash
# Fails when nbdev_clean or nbdev_export would change nbs/ or lllite_nb/ (untracked files included):
# the notebooks are the source, the package is exactly their export, and outputs stay cleared.
set -euo pipefail
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
snap() { find nbs lllite_nb -type f ! -path '*/__pycache__/*' ! -path '*/.ipynb_checkpoints/*' -print0 | sort -z | xargs -0 sha256sum; }
snap > "$tmp/before"
nbdev_clean >/dev/null
snap > "$tmp/clean"
if ! diff -u "$tmp/before" "$tmp/clean"; then
  echo "check_sync: nbdev_clean changed the notebooks above: run 'make export' and commit." >&2; exit 1
fi
nbdev_export
snap > "$tmp/export"
if ! diff -u "$tmp/clean" "$tmp/export"; then
  echo "check_sync: nbdev_export changed lllite_nb/ (files above): the package was out of sync with nbs/." >&2; exit 1
fi
echo "check_sync: notebooks clean, package in sync with nbs/"
