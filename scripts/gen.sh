#!/usr/bin/env bash
# Regenerates examples/gen from examples/proto with the real protoc, using
# protoc-gen-go built from the protobuf module version in go.mod and
# protoc-gen-storks built from this tree.
#
# Usage: scripts/gen.sh [OUT_DIR]   (default: examples/gen)
#
# OUT_DIR is emptied of generated files (*.pb.go, *.storks.go) first, so
# files of deleted .proto files do not linger. The plugins are built into
# $BIN (default: bin). Relative paths are relative to the repository root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

out="${1:-examples/gen}"
bin="${BIN:-bin}"
module="github.com/storks-rpc/storks/examples/gen"

command -v protoc >/dev/null || {
	echo "gen.sh: protoc not found on PATH (Debian/Ubuntu: apt-get install protobuf-compiler)" >&2
	exit 1
}

mkdir -p "$bin" "$out"
go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$bin/protoc-gen-storks" ./cmd/protoc-gen-storks

find "$out" -type f \( -name '*.pb.go' -o -name '*.storks.go' \) -delete

mapfile -t protos < <(cd examples/proto && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)

protoc \
	-I examples/proto \
	--plugin=protoc-gen-go="$bin/protoc-gen-go" \
	--plugin=protoc-gen-storks="$bin/protoc-gen-storks" \
	--go_out="$out" --go_opt=module="$module" \
	--storks_out="$out" --storks_opt=module="$module" \
	"${protos[@]}"
