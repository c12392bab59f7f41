//go:build !unix && !windows

package mdns

// setReuse does nothing where there is no SO_REUSEADDR: the registry then
// cannot share port 5353 with other mDNS software of the host.
func setReuse(uintptr) error { return nil }
