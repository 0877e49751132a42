package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/heraldchat/herald/internal/event"
)

func TestLiveOrderAndTrim(t *testing.T) {
	l := newLive(64, 1<<30)
	for i := int64(1); i <= 200; i++ {
		l.publish([]event.Event{{Seq: i, Room: "r"}})
	}
	ctx := context.Background()
	if _, err := l.read(ctx, 0, 10, time.Second); !errors.Is(err, event.ErrTrimmed) {
		t.Fatalf("read(after 0) = %v; want ErrTrimmed once trimmed", err)
	}
	evs, err := l.read(ctx, 190, 100, time.Second)
	if err != nil || len(evs) != 10 || evs[0].Seq != 191 || evs[9].Seq != 200 {
		t.Fatalf("read(after 190) = %d events from %v, %v; want 191..200", len(evs), evs, err)
	}
	evs, err = l.read(ctx, 195, 2, time.Second)
	if err != nil || len(evs) != 2 || evs[0].Seq != 196 {
		t.Fatalf("read(after 195, max 2) = %v, %v; want 196, 197", evs, err)
	}
}

func TestLiveReadWaits(t *testing.T) {
	l := newLive(16, 1<<30)
	got := make(chan []event.Event, 1)
	go func() {
		evs, _ := l.read(context.Background(), 0, 10, time.Minute)
		got <- evs
	}()
	l.publish([]event.Event{{Seq: 1}})
	select {
	case evs := <-got:
		if len(evs) != 1 || evs[0].Seq != 1 {
			t.Fatalf("read = %v; want the published event", evs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read did not wake on publish")
	}
}

func TestLiveReadCancel(t *testing.T) {
	l := newLive(16, 1<<30)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := l.read(ctx, 0, 10, time.Minute)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read after cancel = %v; want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read ignored ctx cancellation")
	}
}

// The live window is bounded in bytes as in events.
func TestLiveBytes(t *testing.T) {
	l := newLive(1000, 10_000)
	data := make([]byte, 3000)
	for i := int64(1); i <= 10; i++ {
		l.publish([]event.Event{{Seq: i, Data: data}})
		if l.bytes > 10_000 {
			t.Fatalf("after %d events of 3000 bytes the window holds %d; want at most 10000", i, l.bytes)
		}
	}
	if _, err := l.read(context.Background(), 0, 10, time.Second); !errors.Is(err, event.ErrTrimmed) {
		t.Fatalf("read(after 0) = %v; want ErrTrimmed", err)
	}
}
