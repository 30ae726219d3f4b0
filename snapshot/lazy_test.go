package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

func TestLazyStoreOpensWhenTheStoreAnswers(t *testing.T) {
	ctx := context.Background()
	dir, err := snapshot.NewDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	attempts, up := 0, false
	lazy := snapshot.NewLazyStore(func(context.Context) (snapshot.Store, error) {
		attempts++
		if !up {
			return nil, fmt.Errorf("minio: %w", errdefs.ErrUnavailable)
		}
		return dir, nil
	})
	if _, err := lazy.Put(ctx, "k", strings.NewReader("x"), snapshot.Manifest{}); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("put while down: %v", err)
	}
	if _, _, err := lazy.Get(ctx, "k"); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("get while down: %v", err)
	}
	up = true
	if _, err := lazy.Put(ctx, "k", strings.NewReader("payload"), snapshot.Manifest{}); err != nil {
		t.Fatal(err)
	}
	r, _, err := lazy.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(b) != "payload" {
		t.Fatalf("get: %q %v", b, err)
	}
	if _, err := lazy.Stat(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if l, err := lazy.List(ctx, ""); err != nil || len(l) != 1 {
		t.Fatalf("list: %v %v", l, err)
	}
	if err := lazy.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if attempts != 3 {
		t.Errorf("%d opens, want 3: two failed, then one kept", attempts)
	}
}
