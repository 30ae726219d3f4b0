package local

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/openfaas/faas-provider/types"
	bolt "go.etcd.io/bbolt"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

var (
	functionsBucket = []byte("functions")
	secretsBucket   = []byte("secrets")
	// quarantineBucket keeps stored functions the provider refused to run
	// at start, with why, for the operator.
	quarantineBucket = []byte("quarantined-functions")
)

// record is a deployed function as persisted: the request as the user sent
// it, what it resolved to, and the replica count the user asked for.
type record struct {
	Deployment types.FunctionDeployment `json:"deployment"`
	Dir        string                   `json:"dir"`
	Process    string                   `json:"process"`
	Runtime    string                   `json:"runtime,omitempty"`
	// Env is the function directory's declared environment, which the
	// request's envVars override.
	Env       map[string]string `json:"env,omitempty"`
	Replicas  uint64            `json:"replicas"`
	CreatedAt time.Time         `json:"createdAt"`
}

func key(namespace, name string) []byte { return []byte(namespace + "/" + name) }

// store keeps functions and secrets in the provider's bbolt file. Each
// method is one transaction, so a crash leaves either the old or the new
// state, never half of a deploy.
type store struct{ db *bolt.DB }

func newStore(db *bolt.DB) (*store, error) {
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{functionsBucket, secretsBucket, quarantineBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create buckets: %w", err)
	}
	return &store{db: db}, nil
}

// createFunction stores rec unless the function exists.
func (s *store) createFunction(rec record) error {
	ns, name := rec.Deployment.Namespace, rec.Deployment.Service
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(functionsBucket)
		if b.Get(key(ns, name)) != nil {
			return fmt.Errorf("function %s.%s: %w", name, ns, errdefs.ErrAlreadyExists)
		}
		return putJSON(b, key(ns, name), rec)
	})
}

// updateFunction applies change to the stored record atomically.
func (s *store) updateFunction(namespace, name string, change func(*record) error) (record, error) {
	var rec record
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(functionsBucket)
		raw := b.Get(key(namespace, name))
		if raw == nil {
			return fmt.Errorf("function %s.%s: %w", name, namespace, errdefs.ErrNotFound)
		}
		if err := json.Unmarshal(raw, &rec); err != nil {
			return fmt.Errorf("decode function %s.%s: %w", name, namespace, err)
		}
		if err := change(&rec); err != nil {
			return err
		}
		return putJSON(b, key(namespace, name), rec)
	})
	return rec, err
}

func (s *store) deleteFunction(namespace, name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(functionsBucket)
		if b.Get(key(namespace, name)) == nil {
			return fmt.Errorf("function %s.%s: %w", name, namespace, errdefs.ErrNotFound)
		}
		return b.Delete(key(namespace, name))
	})
}

// functions returns every stored function. A record that cannot be decoded
// (hand-edited, or from an incompatible version) is reported in bad and left
// in place, so one bad record never keeps the provider from starting.
func (s *store) functions() (recs []record, bad map[string]error, err error) {
	bad = map[string]error{}
	err = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(functionsBucket).ForEach(func(k, v []byte) error {
			var rec record
			if err := json.Unmarshal(v, &rec); err != nil {
				bad[string(k)] = err
				return nil
			}
			ns, name := splitKey(k)
			if rec.Deployment.Namespace != ns || rec.Deployment.Service != name {
				bad[string(k)] = fmt.Errorf("record names %s/%s", rec.Deployment.Namespace, rec.Deployment.Service)
				return nil
			}
			recs = append(recs, rec)
			return nil
		})
	})
	return recs, bad, err
}

// quarantine moves function record k to the quarantine bucket, as
// {"reason": ..., "record": <raw>}, in one transaction.
func (s *store) quarantine(k, reason string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		raw := tx.Bucket(functionsBucket).Get([]byte(k))
		if raw == nil {
			return nil
		}
		entry, err := json.Marshal(struct {
			Reason string          `json:"reason"`
			At     time.Time       `json:"at"`
			Record json.RawMessage `json:"record"`
		}{reason, time.Now().UTC(), json.RawMessage(validJSON(raw))})
		if err != nil {
			return err
		}
		if err := tx.Bucket(quarantineBucket).Put([]byte(k), entry); err != nil {
			return err
		}
		return tx.Bucket(functionsBucket).Delete([]byte(k))
	})
}

// validJSON returns raw if it is JSON, else raw as a JSON string, so an
// unreadable record is kept byte for byte.
func validJSON(raw []byte) []byte {
	if json.Valid(raw) {
		return raw
	}
	quoted, _ := json.Marshal(string(raw))
	return quoted
}

type secretOp int

const (
	secretCreate secretOp = iota
	secretUpdate
)

func (s *store) putSecret(sec types.Secret, op secretOp) error {
	value := sec.RawValue
	if value == nil {
		value = []byte(sec.Value)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(secretsBucket)
		exists := b.Get(key(sec.Namespace, sec.Name)) != nil
		switch {
		case op == secretCreate && exists:
			return fmt.Errorf("secret %s.%s: %w", sec.Name, sec.Namespace, errdefs.ErrAlreadyExists)
		case op == secretUpdate && !exists:
			return fmt.Errorf("secret %s.%s: %w", sec.Name, sec.Namespace, errdefs.ErrNotFound)
		}
		return b.Put(key(sec.Namespace, sec.Name), value)
	})
}

func (s *store) deleteSecret(namespace, name string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(secretsBucket)
		if b.Get(key(namespace, name)) == nil {
			return fmt.Errorf("secret %s.%s: %w", name, namespace, errdefs.ErrNotFound)
		}
		return b.Delete(key(namespace, name))
	})
}

// secretNames lists the secrets of a namespace ("" for all), with namespace set.
func (s *store) secretNames(namespace string) ([]types.Secret, error) {
	var out []types.Secret
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(secretsBucket).ForEach(func(k, _ []byte) error {
			ns, name := splitKey(k)
			if namespace == "" || ns == namespace {
				out = append(out, types.Secret{Name: name, Namespace: ns})
			}
			return nil
		})
	})
	return out, err
}

// secretValues returns the named secrets' values, failing on the first that
// does not exist so a deploy never starts with a secret missing.
func (s *store) secretValues(namespace string, names []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(names))
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(secretsBucket)
		for _, name := range names {
			v := b.Get(key(namespace, name))
			if v == nil {
				return fmt.Errorf("secret %q not found in namespace %s: %w", name, namespace, errdefs.ErrInvalid)
			}
			out[name] = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

func splitKey(k []byte) (namespace, name string) {
	for i, c := range k {
		if c == '/' {
			return string(k[:i]), string(k[i+1:])
		}
	}
	return "", string(k)
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}
