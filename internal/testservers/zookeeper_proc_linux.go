//go:build linux

package testservers

import (
	"os/exec"
	"syscall"
)

// zooKeeperProcAttr puts the JVM in a process group of its own, so that
// signals reach every process it may start, and has the kernel kill it if
// the test binary dies first.
func zooKeeperProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// zooKeeperSignal sends SIGTERM, or SIGKILL if kill, to the process group of
// cmd.
func zooKeeperSignal(cmd *exec.Cmd, kill bool) {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
		cmd.Process.Signal(sig)
	}
}
