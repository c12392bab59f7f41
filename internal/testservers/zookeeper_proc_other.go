//go:build !linux

package testservers

import (
	"os"
	"os/exec"
	"syscall"
)

func zooKeeperProcAttr() *syscall.SysProcAttr { return nil }

// zooKeeperSignal ends the process of cmd: gracefully where the platform
// allows it, else (or if kill) by killing it.
func zooKeeperSignal(cmd *exec.Cmd, kill bool) {
	if !kill && cmd.Process.Signal(os.Interrupt) == nil {
		return
	}
	cmd.Process.Kill()
}
