package stream

import (
	"context"
	"errors"
	"testing"

	"github.com/heraldchat/herald/internal/event"
	"time"
)

func TestMemoryBrokerOrderAndTrim(t *testing.T) {
	b := NewMemoryBroker(64)
	for i := int64(1); i <= 200; i++ {
		b.Publish([]event.Event{{Seq: i, Room: "r"}})
	}
	ctx := context.Background()
	if _, err := b.Read(ctx, 0, 10); !errors.Is(err, ErrTrimmed) {
		t.Fatalf("Read(after 0) = %v; want ErrTrimmed once trimmed", err)
	}
	evs, err := b.Read(ctx, 190, 100)
	if err != nil || len(evs) != 10 || evs[0].Seq != 191 || evs[9].Seq != 200 {
		t.Fatalf("Read(after 190) = %d events from %v, %v; want 191..200", len(evs), evs, err)
	}
	evs, err = b.Read(ctx, 195, 2)
	if err != nil || len(evs) != 2 || evs[0].Seq != 196 {
		t.Fatalf("Read(after 195, max 2) = %v, %v; want 196, 197", evs, err)
	}
}

func TestMemoryBrokerReadWaits(t *testing.T) {
	b := NewMemoryBroker(0)
	got := make(chan []event.Event, 1)
	go func() {
		evs, _ := b.Read(context.Background(), 0, 10)
		got <- evs
	}()
	b.Publish([]event.Event{{Seq: 1}})
	select {
	case evs := <-got:
		if len(evs) != 1 || evs[0].Seq != 1 {
			t.Fatalf("Read = %v; want the published event", evs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not wake on Publish")
	}
}

func TestMemoryBrokerReadCancel(t *testing.T) {
	b := NewMemoryBroker(0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := b.Read(ctx, 0, 10)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Read after cancel = %v; want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read ignored ctx cancellation")
	}
}
