#!/usr/bin/env bash
# Checks that examples/gen is exactly what scripts/gen.sh generates from
# examples/proto: regenerates into a temporary directory and diffs.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

scripts/gen.sh "$tmp/gen"

# Only generated files are compared: examples/gen also holds hand-written
# doc.go files.
if ! diff -r -u -x doc.go examples/gen "$tmp/gen"; then
	echo >&2
	echo "check-gen.sh: examples/gen is out of date with examples/proto or the generators." >&2
	echo "check-gen.sh: run scripts/gen.sh (make gen) and commit the result." >&2
	exit 1
fi
echo "check-gen.sh: examples/gen is up to date."
