package testservers

import "syscall"

// consulSysProcAttr makes the kernel kill the agent if the test process
// dies without stopping it (a test timeout, a crash), so that no agent is
// left behind holding ports.
func consulSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
