package mdns

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/storks-rpc/storks/registry"
)

var (
	loOnce sync.Once
	loName string
	loErr  error
)

// loopback returns the name of the loopback interface once multicast
// works on it: a datagram sent to 224.0.0.251 with the multicast interface
// set to it comes back. If it does not and the test runs as root, it turns
// multicast on (ip link set lo multicast on; ip route add 224.0.0.0/4 dev
// lo) and tries again. Without working loopback multicast the test fails
// under CI=true and is skipped elsewhere, saying why.
func loopback(t testing.TB) string {
	t.Helper()
	loOnce.Do(func() {
		loName, loErr = findLoopback()
		if loErr != nil {
			return
		}
		if loErr = checkLoopbackMulticast(loName); loErr == nil {
			return
		}
		if os.Geteuid() == 0 {
			_ = exec.Command("ip", "link", "set", loName, "multicast", "on").Run()
			_ = exec.Command("ip", "route", "add", "224.0.0.0/4", "dev", loName).Run()
			loErr = checkLoopbackMulticast(loName)
		}
	})
	if loErr != nil {
		msg := fmt.Sprintf("multicast on the loopback interface does not work (%v); as root: ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo", loErr)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return loName
}

func findLoopback() (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback != 0 && ifi.Flags&net.FlagUp != 0 {
			return ifi.Name, nil
		}
	}
	return "", fmt.Errorf("no loopback interface is up")
}

func checkLoopbackMulticast(name string) error {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return err
	}
	tr, err := listen([]net.Interface{*ifi}, Port)
	if err != nil {
		return err
	}
	defer tr.close()
	probe := []byte(fmt.Sprintf("storks-mdns-loopback-check-%d", time.Now().UnixNano()))
	deadline := time.Now().Add(2 * time.Second)
	_ = tr.conn.SetReadDeadline(deadline)
	if err := tr.send(probe); err != nil {
		return err
	}
	buf := make([]byte, maxPacket+1)
	for {
		n, _, _, err := tr.read(buf)
		if err != nil {
			return fmt.Errorf("sent a datagram to 224.0.0.251 on %s and got nothing back: %w", name, err)
		}
		if string(buf[:n]) == string(probe) {
			return nil
		}
	}
}

// loURL is the URL of a registry on the loopback interface.
func loURL(t testing.TB, params string) string {
	u := "mdns://?iface=" + loopback(t)
	if params != "" {
		u += "&" + params
	}
	return u
}

func openLo(t testing.TB, params string) registry.Registry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := registry.Open(ctx, loURL(t, params))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}
