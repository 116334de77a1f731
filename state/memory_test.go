package state

import (
	"context"
	"errors"
	"testing"
)

func TestMemoryHasStoreSemantics(t *testing.T) {
	ctx := context.Background()
	m := NewMemory()
	k := Key{Cluster: "c", JobID: "1"}
	r := &Record{Key: k, Phase: Detected, Nodes: []Node{{Name: "n1"}}}
	if err := m.Create(ctx, r); err != nil || r.Version != 1 {
		t.Fatalf("create: %v v%d", err, r.Version)
	}
	if err := m.Create(ctx, &Record{Key: k}); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v", err)
	}
	stale, _ := m.Get(ctx, k)
	r.Phase = Held
	if err := m.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := m.Update(ctx, stale); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	got, _ := m.Get(ctx, k)
	got.Nodes[0].Name = "changed"
	again, _ := m.Get(ctx, k)
	if again.Phase != Held || again.Nodes[0].Name != "n1" {
		t.Fatalf("read back %+v: records must be copies", again)
	}
	if keys, _ := m.Active(ctx, "c"); len(keys) != 1 {
		t.Fatalf("active %v", keys)
	}
	if _, err := m.GetInterruption(ctx, "i-1"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}
