package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/openfaas/faas-provider/types"
	bolt "go.etcd.io/bbolt"

	"github.com/pronghorn-openfaas/pronghorn/agent"
	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// Every replica count is bounded by the provider's maximum and the
// function's com.openfaas.scale.max; anything else is refused and stored
// nowhere.
func TestReplicaBounds(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *bolt.DB) { c.MaxReplicas = 3 })
	ctx := context.Background()
	capped := deployment("capped", nil)
	capped.Labels = &map[string]string{"com.openfaas.scale.max": "2"}
	if err := e.b.Deploy(ctx, capped); err != nil {
		t.Fatal(err)
	}
	for _, n := range []uint64{3, 4, math.MaxInt64 + 1, math.MaxUint64} {
		if err := e.b.Scale(ctx, "", "capped", n); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("scale to %d: %v, want invalid", n, err)
		}
	}
	if st := e.status("capped"); st.Replicas != 1 {
		t.Fatalf("refused scales changed the count: %d", st.Replicas)
	}
	if err := e.b.Scale(ctx, "", "capped", 2); err != nil {
		t.Fatal(err)
	}
	for _, labels := range []map[string]string{
		{"com.openfaas.scale.min": "4"},  // above the provider's max
		{"com.openfaas.scale.max": "4"},  // above the provider's max
		{"com.openfaas.scale.max": "0"},  // a function that may never run
		{"com.openfaas.scale.max": "-1"}, //
		{"com.openfaas.scale.max": "18446744073709551615"},
		{"com.openfaas.scale.min": "2", "com.openfaas.scale.max": "1"},
	} {
		d := deployment("bad", nil)
		d.Labels = &labels
		if err := e.b.Deploy(ctx, d); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("deploy with labels %v: %v, want invalid", labels, err)
		}
	}
	if _, err := e.b.function("openfaas-fn", "bad"); err == nil {
		t.Fatal("a refused deploy was stored")
	}
}

// Records the provider cannot use as they are never keep it from starting:
// a count beyond the maximum is clamped; an unreadable record, or one
// naming a directory outside --functions-dir, is set aside.
func TestLoadClampsAndSkipsBadRecords(t *testing.T) {
	e := newEnv(t, func(c *Config, _ *bolt.DB) { c.MaxReplicas = 2 })
	if err := e.b.Deploy(context.Background(), deployment("huge", nil)); err != nil {
		t.Fatal(err)
	}
	e.waitAvailable("huge", 1)
	e.close()
	db, err := bolt.Open(e.dataDir+"/state.db", 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(functionsBucket)
		var rec record
		if err := json.Unmarshal(b.Get(key("openfaas-fn", "huge")), &rec); err != nil {
			return err
		}
		rec.Replicas = math.MaxUint64
		raw, _ := json.Marshal(rec)
		if err := b.Put(key("openfaas-fn", "huge"), raw); err != nil {
			return err
		}
		// A function an older provider ran from anywhere on the host.
		rec.Deployment.Service, rec.Dir, rec.Replicas = "anywhere", "/", 1
		raw, _ = json.Marshal(rec)
		if err := b.Put(key("openfaas-fn", "anywhere"), raw); err != nil {
			return err
		}
		return b.Put(key("openfaas-fn", "garbage"), []byte("{not json"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	e.open()
	if st := e.status("huge"); st.Replicas != 2 {
		t.Fatalf("stored 2^64-1 replicas came back as %d, want the maximum 2", st.Replicas)
	}
	e.waitAvailable("huge", 2)
	for _, name := range []string{"garbage", "anywhere"} {
		if _, err := e.b.function("openfaas-fn", name); !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("%s: %v, want it not loaded", name, err)
		}
		// Set aside, not lost, and the name is free again.
		err := e.db.View(func(tx *bolt.Tx) error {
			if tx.Bucket(quarantineBucket).Get(key("openfaas-fn", name)) == nil {
				return fmt.Errorf("%s not in quarantine", name)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.b.Deploy(context.Background(), deployment(name, nil)); err != nil {
			t.Fatalf("deploy %s again: %v", name, err)
		}
	}
}

// A secret that would not fit the worker's secrets mount is refused when
// it is created, updated or mounted, not discovered by replicas that
// cannot start.
func TestSecretsMustFitTheMount(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	big := make([]byte, agent.MaxSecretsBytes+1)
	if err := e.b.CreateSecret(ctx, types.Secret{Name: "big", RawValue: big}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("create oversized secret: %v", err)
	}
	half := make([]byte, agent.MaxSecretsBytes/2+1)
	for _, n := range []string{"a", "b"} {
		if err := e.b.CreateSecret(ctx, types.Secret{Name: n, RawValue: half}); err != nil {
			t.Fatal(err)
		}
	}
	d := deployment("both", nil)
	d.Secrets = []string{"a", "b"}
	if err := e.b.Deploy(ctx, d); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("deploy mounting too much: %v", err)
	}
	d.Secrets = []string{"a"}
	if err := e.b.Deploy(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := e.b.UpdateSecret(ctx, types.Secret{Name: "a", RawValue: big[:agent.MaxSecretsBytes]}); err != nil {
		t.Fatalf("a secret that just fits: %v", err)
	}
	if err := e.b.UpdateSecret(ctx, types.Secret{Name: "a", RawValue: big}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("update to an oversized value: %v", err)
	}
}

// A secret update reaches running replicas, as a Kubernetes secret volume
// does, and re-versions the functions that mount it.
func TestSecretUpdateReachesReplicasAndReversions(t *testing.T) {
	e := newEnv(t, withColdEngine(t))
	ctx := context.Background()
	if err := e.b.CreateSecret(ctx, types.Secret{Name: "api-key", Value: "one"}); err != nil {
		t.Fatal(err)
	}
	d := deployment("reader", map[string]string{"SECRET_NAME": "api-key"})
	d.Secrets = []string{"api-key"}
	if err := e.b.Deploy(ctx, d); err != nil {
		t.Fatal(err)
	}
	got, err := e.invoke("reader")
	if err != nil || !strings.Contains(got, "secret=one") {
		t.Fatalf("before: %q %v", got, err)
	}
	before := e.engineKey("reader")
	if err := e.b.UpdateSecret(ctx, types.Secret{Name: "api-key", Value: "two"}); err != nil {
		t.Fatal(err)
	}
	got, err = e.invoke("reader")
	if err != nil || !strings.Contains(got, "secret=two") || !strings.Contains(got, "count=2") {
		t.Fatalf("the running replica (count=2) must read the new value: %q %v", got, err)
	}
	if after := e.engineKey("reader"); after == before {
		t.Fatal("a secret update left the function's version unchanged")
	}
}

// withColdEngine gives the backend an engine and a store, so functions
// have versions, without needing CRIU: the cold strategy never snapshots.
func withColdEngine(t testing.TB) func(*Config, *bolt.DB) {
	return func(c *Config, db *bolt.DB) {
		engine, store := openEngine(t, db)
		c.Engine, c.Store = engine, store
		c.EngineDefaults = orchestrator.DefaultConfig()
		c.EngineDefaults.Strategy = orchestrator.StrategyCold
	}
}

// A deploy whose client goes away once the request is accepted still
// completes: the function is listed and a second deploy is a conflict.
func TestDeployOutlivesItsRequest(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := e.b.Deploy(ctx, deployment("orphan", nil))
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if _, lerr := e.b.function("openfaas-fn", "orphan"); (lerr == nil) != (err == nil) {
		t.Fatalf("deploy said %v, lookup says %v", err, lerr)
	}
	if err == nil {
		if err := e.b.Deploy(context.Background(), deployment("orphan", nil)); !errors.Is(err, errdefs.ErrAlreadyExists) {
			t.Fatalf("second deploy: %v", err)
		}
		e.waitAvailable("orphan", 1)
	}
}

// An update racing a scale never loses the scale: the count in memory and
// in the state file agree after every round.
func TestUpdateAndScaleDoNotLoseWrites(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.b.Deploy(ctx, deployment("racer", nil)); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		done := make(chan error, 2)
		go func() { done <- e.b.Update(ctx, deployment("racer", map[string]string{"GREETING": strconv.Itoa(i)})) }()
		go func() { done <- e.b.Scale(ctx, "", "racer", uint64(i%3)) }()
		for range 2 {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		recs, _, _ := e.b.store.functions()
		if st := e.status("racer"); len(recs) != 1 || recs[0].Replicas != st.Replicas || st.Replicas != uint64(i%3) {
			t.Fatalf("round %d: stored %d, API %d, want %d", i, recs[0].Replicas, st.Replicas, i%3)
		}
	}
	e.waitAvailable("racer", 39%3)
}

func openEngine(t testing.TB, db *bolt.DB) (*orchestrator.Engine, *snapshot.DirStore) {
	t.Helper()
	engine, err := orchestrator.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	store, err := snapshot.NewDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return engine, store
}
