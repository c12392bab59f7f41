#!/usr/bin/env bash
# Regenerates examples/gen from examples/proto with "storks generate", which
# compiles the .proto files in-process and runs protoc-gen-go (of the
# protobuf module version in go.mod) and protoc-gen-storks (of this tree)
# in-process too: no protoc is needed. The .pb.go headers therefore read
# "protoc (unknown)"; every other byte is what protoc would write, which
# TestExamplesMatchProtoc (cmd/protoc-gen-storks) checks.
#
# Usage: scripts/gen.sh [OUT_DIR]   (default: examples/gen)
#
# OUT_DIR is emptied of generated files (*.pb.go, *.storks.go) first, so
# files of deleted .proto files do not linger; the hand-written doc.go files
# stay. Relative paths are relative to the repository root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

out="${1:-examples/gen}"
module="github.com/storks-rpc/storks/examples/gen"

mkdir -p "$out"
find "$out" -type f \( -name '*.pb.go' -o -name '*.storks.go' \) -delete

mapfile -t protos < <(cd examples/proto && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)

go run ./cmd/storks generate \
	-I examples/proto \
	--go_out="$out" --go_opt=module="$module" \
	--storks_out="$out" --storks_opt=module="$module" \
	"${protos[@]}"
