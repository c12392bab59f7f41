#!/usr/bin/env bash
# `make console`: the web console (storks console) on 127.0.0.1:8080. With
# REGISTRY=URL, of that registry; without it, of a `storks dev` etcd started
# here on 127.0.0.1:2379 (stopped on exit), which `make demo
# REGISTRY=etcd://127.0.0.1:2379/storks` in another terminal then fills.
# LISTEN=HOST:PORT serves elsewhere; $STORKS_CONSOLE_TOKEN enables writes.
set -euo pipefail
bin=${BIN:-bin}
reg=${REGISTRY:-}
if [ -z "$reg" ]; then
	out=$(mktemp)
	"$bin/storks" dev >"$out" 2>/dev/null &
	dev=$!
	trap 'kill $dev 2>/dev/null || true; wait $dev 2>/dev/null || true; rm -f "$out"' EXIT
	for _ in $(seq 300); do
		reg=$(head -n 1 "$out")
		[ -n "$reg" ] && break
		if ! kill -0 $dev 2>/dev/null; then
			echo "console.sh: storks dev failed to start (is 127.0.0.1:2379 taken? REGISTRY=URL uses another registry)" >&2
			exit 1
		fi
		sleep 0.1
	done
	[ -n "$reg" ] || { echo "console.sh: storks dev printed no URL within 30 s" >&2; exit 1; }
	echo "console.sh: started storks dev, registry $reg; fill it from another terminal with: make demo REGISTRY=$reg"
fi
"$bin/storks" console --registry "$reg" --listen "${LISTEN:-127.0.0.1:8080}"
