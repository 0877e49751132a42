package api

import (
	"context"

	"github.com/heraldchat/herald/internal/event"
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
func (l StoreLog) Events(ctx context.Context, q stream.Query) ([]event.Event, error) {
	return l.Store.Events(ctx, event.Query{After: q.After, UpTo: q.UpTo, Rooms: q.Rooms, Subject: q.Subject, Limit: q.Limit})
}
