package snapshot

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

// Manifest describes one stored snapshot. Durations are serialised as
// nanoseconds (Go's time.Duration JSON form).
type Manifest struct {
	// Key is the store key of the object.
	Key string `json:"key"`
	// Function and Runtime name what was dumped ("pypy", "jvm", "node").
	Function string `json:"function,omitempty"`
	Runtime  string `json:"runtime,omitempty"`
	// RequestNumber is the lineage request number at which the snapshot was
	// taken (requests served since the original cold start).
	RequestNumber int `json:"requestNumber"`
	// RawBytes is the size of the CRIU image directory, PackedBytes the size of
	// the stored object (compressed, and encrypted when Encrypted).
	RawBytes    int64 `json:"rawBytes"`
	PackedBytes int64 `json:"packedBytes"`
	// DumpTime is the criu dump, UploadTime the pack+upload that followed it.
	DumpTime   time.Duration `json:"dumpTime,omitempty"`
	UploadTime time.Duration `json:"uploadTime,omitempty"`
	// RestoreTime is filled by Restore (download+verify+unpack+criu restore);
	// it is never stored.
	RestoreTime time.Duration `json:"restoreTime,omitempty"`
	// SHA256 is the hex digest of the stored object's bytes.
	SHA256    string    `json:"sha256"`
	CreatedAt time.Time `json:"createdAt"`
	Encrypted bool      `json:"encrypted"`
	// KeyID names the key an encrypted snapshot was sealed with (not the
	// key itself), so a key mismatch is not mistaken for tampering.
	KeyID string `json:"keyId,omitempty"`
}

func (m Manifest) marshal() ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return b, nil
}

func unmarshalManifest(b []byte) (Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("decode manifest: %w: %w", ErrCorrupt, err)
	}
	return m, nil
}

// validateKey keeps keys usable both as S3 object names and as relative paths
// under a directory store: no absolute paths, no "..", no empty segments.
func validateKey(key string) error {
	if key == "" || len(key) > 512 {
		return fmt.Errorf("snapshot key %q: %w: must be 1..512 characters", key, errdefs.ErrInvalid)
	}
	seg := 0
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
			seg++
		case c == '/':
			if seg == 0 {
				return fmt.Errorf("snapshot key %q: %w: empty path segment", key, errdefs.ErrInvalid)
			}
			seg = 0
		default:
			return fmt.Errorf("snapshot key %q: %w: only [A-Za-z0-9._-/] allowed", key, errdefs.ErrInvalid)
		}
	}
	if seg == 0 {
		return fmt.Errorf("snapshot key %q: %w: trailing slash", key, errdefs.ErrInvalid)
	}
	for _, part := range splitKey(key) {
		if part == "." || part == ".." {
			return fmt.Errorf("snapshot key %q: %w: dot segment", key, errdefs.ErrInvalid)
		}
	}
	return nil
}

func splitKey(key string) []string {
	var parts []string
	start := 0
	for i := 0; i <= len(key); i++ {
		if i == len(key) || key[i] == '/' {
			parts = append(parts, key[start:i])
			start = i + 1
		}
	}
	return parts
}
