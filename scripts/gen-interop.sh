#!/usr/bin/env bash
# Regenerates internal/interop/grpcgo/pb from examples/proto with protoc and
# the real grpc-go plugins: protoc-gen-go and protoc-gen-go-grpc, pinned as
# tools of tools/grpcgen/go.mod. The result is a plain grpc-go client (and
# server) of the example services, which the interop tests of
# internal/interop/grpcgo call a Storks provider with.
#
# The .proto files are compiled unchanged: their proto packages, and so the
# names on the wire, are those of examples/gen. Only their Go packages
# differ: M options map each file to a package under
# internal/interop/grpcgo/pb instead of its go_package (examples/gen/...),
# so the tests never link examples/gen (two Go packages registering the
# same proto file would conflict).
#
# Usage: scripts/gen-interop.sh          regenerate and write
#        scripts/gen-interop.sh -check   fail if the committed files differ
#
# Needs protoc on $PATH (`make deps-protoc` installs Debian's); the headers
# of the generated files name its version, so -check expects the same one.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

check=false
case "${1:-}" in
"") ;;
-check) check=true ;;
*)
	echo "usage: $0 [-check]" >&2
	exit 2
	;;
esac

if ! command -v protoc >/dev/null; then
	echo "gen-interop.sh: protoc is not on \$PATH; run 'make deps-protoc' (Debian's protobuf-compiler)" >&2
	exit 1
fi

dest="internal/interop/grpcgo/pb"
module="github.com/storks-rpc/storks/$dest"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# The plugins' paths; the first run builds them through the module proxy.
gen_go="$(cd tools/grpcgen && go tool -n protoc-gen-go)"
gen_go_grpc="$(cd tools/grpcgen && go tool -n protoc-gen-go-grpc)"

mapfile -t protos < <(cd examples/proto && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)

# One M option per file: its directory under $module, with the Go package
# name of its go_package (the part after ';', e.g. greeterv1).
opts=()
for p in "${protos[@]}"; do
	name="$(sed -n 's/^option go_package = "[^;"]*;\([A-Za-z0-9_]*\)";.*/\1/p' "examples/proto/$p")"
	if [ -z "$name" ]; then
		echo "gen-interop.sh: examples/proto/$p has no go_package with a ';name' part" >&2
		exit 1
	fi
	opts+=("M$p=$module/$(dirname "$p");$name")
done

go_opts=("module=$module")
for o in "${opts[@]}"; do go_opts+=("$o"); done
join() {
	local IFS=,
	echo "$*"
}

out="$tmp/pb"
mkdir -p "$out"
protoc -I examples/proto \
	--plugin=protoc-gen-go="$gen_go" --plugin=protoc-gen-go-grpc="$gen_go_grpc" \
	--go_out="$out" --go_opt="$(join "${go_opts[@]}")" \
	--go-grpc_out="$out" --go-grpc_opt="$(join "${go_opts[@]}")" \
	"${protos[@]}"

if $check; then
	# Only generated files are compared: $dest also holds hand-written
	# doc.go files.
	if ! diff -r -u -x doc.go "$dest" "$out"; then
		echo >&2
		echo "gen-interop.sh: $dest is out of date with examples/proto, the plugins of tools/grpcgen or protoc ($(protoc --version))." >&2
		echo "gen-interop.sh: run scripts/gen-interop.sh and commit the result." >&2
		exit 1
	fi
	echo "gen-interop.sh: $dest is up to date."
	exit 0
fi

mkdir -p "$dest"
find "$dest" -type f -name '*.pb.go' -delete
cp -R "$out/." "$dest/"
echo "gen-interop.sh: wrote $dest"
