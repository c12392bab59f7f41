// Package browsertest tests the storks web console (package console) in a
// real headless browser: Debian's chromium, driven with chromedp, against
// three examples/provider processes and a consumer on an embedded etcd.
//
// It is a module of its own because chromedp needs Go 1.25 while the main
// module stays at Go 1.24. `make test-console` (part of `make test`) runs
// it; `make deps-chromium` installs chromium. Under CI=true a missing
// chromium is a failure, elsewhere the tests skip, saying so.
package browsertest
