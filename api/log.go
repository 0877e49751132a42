package api

import (
	"context"

	"github.com/heraldchat/herald/store"
	"github.com/heraldchat/herald/stream"
)

// StoreLog presents the store's event table as the stream's durable Log.
type StoreLog struct{ Store *store.Store }

var _ stream.Log = StoreLog{}

// Epoch implements stream.Log.
func (l StoreLog) Epoch() string { return l.Store.Epoch() }

// Snapshot implements stream.Log.
func (l StoreLog) Snapshot(ctx context.Context, user string) ([]string, int64, error) {
	return l.Store.Snapshot(ctx, user)
}

// PrunedThrough implements stream.Log.
func (l StoreLog) PrunedThrough() int64 { return l.Store.PrunedThrough() }

// Events implements stream.Log.
func (l StoreLog) Events(ctx context.Context, q stream.Query) ([]stream.Event, error) {
	evs, err := l.Store.Events(ctx, store.LogQuery{After: q.After, UpTo: q.UpTo, Rooms: q.Rooms, Subject: q.Subject, Limit: q.Limit})
	if err != nil {
		return nil, err
	}
	return StreamEvents(evs), nil
}

// StreamEvents converts the store's events to the stream's.
func StreamEvents(evs []store.Event) []stream.Event {
	out := make([]stream.Event, len(evs))
	for i, e := range evs {
		out[i] = stream.Event{Seq: e.Seq, Room: e.Room, Type: e.Type, Subject: e.Subject, Data: e.Data}
	}
	return out
}
