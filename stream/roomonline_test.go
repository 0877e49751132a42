package stream

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"
)

// sizeDir is a Directory of room sizes that counts how often it is asked.
type sizeDir struct {
	sizes map[string]int
	asked [][]string // the rooms of each LargeRooms call
}

func (d *sizeDir) PresenceRooms(context.Context, string, int) ([]string, []string, error) {
	return nil, nil, nil
}

func (d *sizeDir) LargeRooms(_ context.Context, rooms []string, limit int) ([]string, error) {
	d.asked = append(d.asked, slices.Clone(rooms))
	var out []string
	for _, r := range rooms {
		if d.sizes[r] > limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func (d *sizeDir) RoomMembers(context.Context, string) ([]string, error) { return nil, nil }
func (d *sizeDir) SaveLastSeen(context.Context, string, time.Time) error { return nil }
func (d *sizeDir) LastSeen(context.Context, []string) (map[string]time.Time, error) {
	return nil, nil
}

// TestRoomCounterSplit: rooms are sized in the Directory once, and again
// only after their membership changed, at limit-1, limit and limit+1.
func TestRoomCounterSplit(t *testing.T) {
	ctx := context.Background()
	dir := &sizeDir{sizes: map[string]int{"under": 2, "at": 3, "over": 4}}
	rc := newRoomCounter(dir, &memoryBoard{counts: map[string]int{}}, 3, slog.New(slog.DiscardHandler))
	split := func(step string, wantSmall, wantLarge []string, wantAsked int) {
		t.Helper()
		small, large, err := rc.split(ctx, []string{"under", "at", "over"})
		if err != nil || !slices.Equal(small, wantSmall) || !slices.Equal(large, wantLarge) {
			t.Fatalf("%s: split = %v, %v, %v; want %v, %v", step, small, large, err, wantSmall, wantLarge)
		}
		if len(dir.asked) != wantAsked {
			t.Fatalf("%s: LargeRooms called %d times (%v); want %d", step, len(dir.asked), dir.asked, wantAsked)
		}
	}
	split("first", []string{"under", "at"}, []string{"over"}, 1)
	split("sized already", []string{"under", "at"}, []string{"over"}, 1)

	// "at" grows past the limit and "over" shrinks to it: only they are
	// sized again.
	dir.sizes["at"], dir.sizes["over"] = 4, 3
	rc.changed([]string{"at", "over"})
	split("after a change", []string{"under", "over"}, []string{"at"}, 2)
	if got := dir.asked[1]; !slices.Equal(got, []string{"at", "over"}) {
		t.Errorf("sized again %v; want [at over]", got)
	}
}

// TestRoomCounterForgets: past its bound the counter forgets the sizes it
// holds (those of deleted rooms among them) and sizes rooms again, still
// right.
func TestRoomCounterForgets(t *testing.T) {
	ctx := context.Background()
	dir := &sizeDir{sizes: map[string]int{"over": 4, "a": 1, "b": 1, "c": 1, "gone": 0}}
	rc := newRoomCounter(dir, &memoryBoard{counts: map[string]int{}}, 3, slog.New(slog.DiscardHandler))
	rc.maxSized = 3
	split := func(step string, rooms, wantLarge []string, wantAsked int) {
		t.Helper()
		_, large, err := rc.split(ctx, rooms)
		if err != nil || !slices.Equal(large, wantLarge) {
			t.Fatalf("%s: large = %v, %v; want %v", step, large, err, wantLarge)
		}
		if len(dir.asked) != wantAsked {
			t.Fatalf("%s: LargeRooms called %d times (%v); want %d", step, len(dir.asked), dir.asked, wantAsked)
		}
		if len(rc.sized) > rc.maxSized {
			t.Fatalf("%s: %d sizes held; want at most %d", step, len(rc.sized), rc.maxSized)
		}
	}
	split("first", []string{"over", "gone"}, []string{"over"}, 1)
	split("within the bound", []string{"over", "a"}, []string{"over"}, 2)
	split("past it", []string{"b", "c"}, nil, 3)
	if _, ok := rc.sized["gone"]; ok {
		t.Error("the size of a room no one asked about since is still held past the bound")
	}
	split("asked again", []string{"over"}, []string{"over"}, 4)
	if got := dir.asked[3]; !slices.Equal(got, []string{"over"}) {
		t.Errorf("sized again %v; want [over]", got)
	}
}
