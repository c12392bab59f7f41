package runtime_test

import (
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	storks "github.com/storks-rpc/storks/runtime"
)

// warnings counts the connection warnings in logs that contain substr and
// the warnings of kind the summaries say were suppressed.
func warnings(logs, substr, kind string) (logged, suppressed, summaries int) {
	re := regexp.MustCompile(`suppressed (\d+) similar warnings in the last [^"]+" kind="?` + regexp.QuoteMeta(kind))
	for _, line := range strings.Split(logs, "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			suppressed += n
			summaries++
		} else if strings.Contains(line, substr) {
			logged++
		}
	}
	return logged, suppressed, summaries
}

// A thousand hostile connections (each a protocol error the server closes
// with a warning) log a bounded number of lines, and summaries account for
// every warning they suppressed.
func TestConnectionWarningsAreRateLimited(t *testing.T) {
	const hostile = 1000
	reg := newRegistry(t)
	var logs logBuffer
	srv, _ := startProvider(t, reg, &echoImpl{name: "p"}, []storks.ServerOption{storks.WithLogger(logs.logger())})
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	for range hostile {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.Dial("tcp", srv.Addr())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			var b [64]byte
			for {
				if _, err := c.Read(b[:]); err != nil {
					return // closed by the server
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	const what = "not a Storks peer"
	waitFor(t, func() bool {
		logged, suppressed, _ := warnings(logs.String(), what, "protocol error")
		return logged+suppressed == hostile
	})
	logged, suppressed, summaries := warnings(logs.String(), what, "protocol error")
	lines := strings.Count(logs.String(), "\n")
	t.Logf("%d hostile connections in %v: %d lines logged (%d warnings, %d summaries of %d suppressed)", hostile, elapsed.Round(time.Millisecond), lines, logged, summaries, suppressed)
	// At most 10 warnings per second, and a summary per second after the
	// first.
	windows := int(elapsed/time.Second) + 2
	if logged > 10*windows || summaries > windows || lines > logged+summaries {
		t.Errorf("%d warnings and %d summaries in %v, want at most %d and %d", logged, summaries, elapsed, 10*windows, windows)
	}
	if suppressed == 0 || !strings.Contains(logs.String(), "similar warnings in the last") {
		t.Errorf("no summary of the suppressed warnings:\n%s", logs.String())
	}
}
