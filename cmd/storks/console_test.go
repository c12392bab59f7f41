package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// storks console serves the console on loopback, says so, prints its URL
// first, and stops on interrupt.
func TestConsoleCommand(t *testing.T) {
	u, reg := newInproc(t)
	mustRegister(t, reg, inst("hello.v1.Greeter", "", "", "p1", "127.0.0.1:9001", nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"console", "--registry", u, "--listen", "127.0.0.1:0", "--refresh", "50ms"}, strings.NewReader(""), &out, &errOut)
	}()
	var url string
	deadline := time.Now().Add(10 * time.Second)
	for url == "" {
		if line, _, ok := strings.Cut(out.String(), "\n"); ok {
			url = line
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no URL printed; stderr:\n%s", errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("URL %q", url)
	}
	for _, want := range []string{"on loopback only", "read-only"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut.String())
		}
	}
	var body string
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(body, "hello.v1.Greeter"); {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		if time.Now().After(deadline) {
			t.Fatalf("the services page never listed hello.v1.Greeter:\n%s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A write to a read-only console is refused.
	resp, err := http.PostForm(url+"provider", map[string][]string{"service": {"hello.v1.Greeter"}, "addr": {"127.0.0.1:9001"}, "action": {"disable"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("write to a read-only console: %d", resp.StatusCode)
	}
	// Another Host (DNS rebinding) is refused on loopback.
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = "rebind.example"
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("Host rebind.example: %d", resp.StatusCode)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit code %d; stderr:\n%s", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("storks console did not stop on interrupt")
	}
}

func TestConsoleCommandErrors(t *testing.T) {
	checkOneLineError(t, runInProcess(context.Background(), "console", "--registry", ""), exitUsage, "--registry is required")
	checkOneLineError(t, runInProcess(context.Background(), "console", "--registry", "inproc://x", "--listen", "nope"), exitUsage, `--listen "nope" is not HOST:PORT`)
	checkOneLineError(t, runInProcess(context.Background(), "console", "--registry", "bogus://x"), exitFail, "bogus")
}
