// staticcheck, run by `make lint`. Its own module rather than a tool of
// ../go.mod: staticcheck v0.8.2 needs go 1.26 and golang.org/x/tools v0.51
// (whose type checker must know the Go version it analyses), and adding it
// there would move the Consul build's own pins (x/tools v0.12, x/mod, x/sync).
module github.com/storks-rpc/storks/tools/lint

go 1.26.0

tool honnef.co/go/tools/cmd/staticcheck

require (
	github.com/BurntSushi/toml v1.4.1-0.20240526193622-a339e1f7089c // indirect
	golang.org/x/exp/typeparams v0.0.0-20231108232855-2478ac86f678 // indirect
	golang.org/x/mod v0.41.0 // indirect
	golang.org/x/sync v0.23.0 // indirect
	golang.org/x/tools v0.51.0 // indirect
	honnef.co/go/tools v0.8.2 // indirect
)
