package store

import (
	"path/filepath"
	"testing"
)

// The mark file reads back what was recorded last, a shorter epoch or
// position over a longer one included, and a new file reads as nothing.
func TestMarkFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "herald.db"+markSuffix)
	m, err := openMark(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	if epoch, pos, ok := m.read(); ok {
		t.Fatalf("a new mark file reads %q %d; want nothing", epoch, pos)
	}
	for _, rec := range []struct {
		epoch string
		pos   int64
	}{{"longepochname", 123456789}, {"abc", 7}, {"abc", 0}} {
		if err := m.record(rec.epoch, rec.pos); err != nil {
			t.Fatal(err)
		}
		if epoch, pos, ok := m.read(); !ok || epoch != rec.epoch || pos != rec.pos {
			t.Fatalf("mark after record(%q, %d) = %q %d %v; want it back", rec.epoch, rec.pos, epoch, pos, ok)
		}
	}
}

// BenchmarkMarkRecord is the cost the mark adds to each commit.
func BenchmarkMarkRecord(b *testing.B) {
	m, err := openMark(filepath.Join(b.TempDir(), "herald.db"+markSuffix))
	if err != nil {
		b.Fatal(err)
	}
	defer m.close()
	b.ReportAllocs()
	var pos int64
	for b.Loop() {
		pos++
		if err := m.record("abcdefgh", pos); err != nil {
			b.Fatal(err)
		}
	}
}
