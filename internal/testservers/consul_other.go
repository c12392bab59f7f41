//go:build !linux

package testservers

import "syscall"

// consulSysProcAttr is nil where the kernel cannot kill the agent when the
// test process dies.
func consulSysProcAttr() *syscall.SysProcAttr { return nil }
