package stream

import (
	"testing"
	"time"
)

// A user's presence notices are delivered in the order of their versions:
// one older than a notice delivered already is dropped, for at least
// versionMemory; other users' and unversioned notices pass.
func TestVersionsDropStaleNotices(t *testing.T) {
	var v versions
	t0 := time.Unix(1000, 0)
	steps := []struct {
		n     Notice
		at    time.Duration
		fresh bool
	}{
		{Notice{Of: "bob", Version: 10}, 0, true},
		{Notice{Of: "bob", Version: 9}, 0, false},  // older: stale
		{Notice{Of: "bob", Version: 10}, 0, false}, // the same change twice
		{Notice{Of: "ann", Version: 5}, 0, true},   // another user's
		{Notice{Type: "room:online"}, 0, true},     // not versioned
		{Notice{Of: "bob", Version: 11}, 0, true},
		{Notice{Of: "bob", Version: 10}, versionMemory, false}, // remembered after one rotation
		{Notice{Of: "ann", Version: 4}, versionMemory + time.Second, false},
		{Notice{Of: "bob", Version: 10}, 3 * versionMemory, true}, // forgotten after two
	}
	for i, s := range steps {
		if got := v.fresh(s.n, t0.Add(s.at)); got != s.fresh {
			t.Errorf("step %d: fresh(%+v) at +%v = %v; want %v", i, s.n, s.at, got, s.fresh)
		}
	}
}
