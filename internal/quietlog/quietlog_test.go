package quietlog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// A burst of failures writes one line: the first.
func TestBurstWritesOneLine(t *testing.T) {
	var buf bytes.Buffer
	q := New(slog.New(slog.NewTextHandler(&buf, nil)))
	for i := range 100 {
		q.Warn("redis unavailable", "try", i)
	}
	if got := strings.Count(buf.String(), "\n"); got != 1 || !strings.Contains(buf.String(), "try=0") {
		t.Fatalf("100 warnings in a burst logged %d lines: %q; want the first only", got, buf.String())
	}
}
