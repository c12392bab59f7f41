package registrytest

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// LogBuffer collects everything an adapter logs, Debug included, rendered
// by slog's text handler, so credential tests can look for secrets in it.
// It is safe for concurrent use.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p; it makes LogBuffer an io.Writer.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything logged so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Logger returns a logger that writes every record into l.
func (l *LogBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// CheckNoSecret fails the test if s shows any of the secrets; what names
// where s came from. The failure message shows s with the secret masked.
func CheckNoSecret(t testing.TB, what, s string, secrets ...string) {
	t.Helper()
	for _, secret := range secrets {
		if secret != "" && strings.Contains(s, secret) {
			t.Errorf("%s shows a secret: %s", what, strings.ReplaceAll(s, secret, "<SECRET>"))
		}
	}
}
