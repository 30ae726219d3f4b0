package agent

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func putSecrets(t *testing.T, control *http.Client, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://agent/secrets", strings.NewReader(body))
	resp, err := control.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func secretsBody(t *testing.T, secrets map[string][]byte) string {
	b, err := json.Marshal(SecretsUpdate{Secrets: secrets})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readSecrets returns the files of dir (modes checked), without "keep".
func readSecrets(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		if e.Name() == "keep" {
			continue
		}
		info, _ := e.Info()
		if info.Mode().Perm() != secretMode {
			t.Errorf("%s: mode %v, want %v", e.Name(), info.Mode().Perm(), os.FileMode(secretMode))
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

// TestPutSecrets updates the secrets of a worker that is not isolated: its
// secrets dir is a plain directory, holding a file of someone else's.
func TestPutSecrets(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "keep"), []byte("not ours"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, control, _, _ := startAgentWith(t, nil, func(c *Config) { c.SecretsDir = dir })
	waitStatus(t, control)

	// Steps run in order, each on the state the previous one left.
	steps := []struct {
		name       string
		body       string
		wantStatus int
		want       map[string]string // files after the step
	}{
		{name: "first set", body: secretsBody(t, map[string][]byte{"db-password": []byte("s3cret"), "api-key": []byte("k1")}),
			wantStatus: http.StatusNoContent, want: map[string]string{"db-password": "s3cret", "api-key": "k1"}},
		{name: "change one, add one, drop one", body: secretsBody(t, map[string][]byte{"db-password": []byte("rotated"), "token": {0, 1, 2}}),
			wantStatus: http.StatusNoContent, want: map[string]string{"db-password": "rotated", "token": "\x00\x01\x02"}},
		{name: "name escaping the dir", body: secretsBody(t, map[string][]byte{"../evil": []byte("x")}),
			wantStatus: http.StatusBadRequest, want: map[string]string{"db-password": "rotated", "token": "\x00\x01\x02"}},
		{name: "dot name", body: secretsBody(t, map[string][]byte{"..": []byte("x"), "ok": []byte("y")}),
			wantStatus: http.StatusBadRequest, want: map[string]string{"db-password": "rotated", "token": "\x00\x01\x02"}},
		{name: "too large", body: secretsBody(t, map[string][]byte{"big": make([]byte, MaxSecretsBytes+1)}),
			wantStatus: http.StatusRequestEntityTooLarge, want: map[string]string{"db-password": "rotated", "token": "\x00\x01\x02"}},
		{name: "no secrets field", body: `{}`,
			wantStatus: http.StatusBadRequest, want: map[string]string{"db-password": "rotated", "token": "\x00\x01\x02"}},
		{name: "not json", body: `{"secrets": `,
			wantStatus: http.StatusBadRequest, want: map[string]string{"db-password": "rotated", "token": "\x00\x01\x02"}},
		{name: "empty set", body: `{"secrets": {}}`, wantStatus: http.StatusNoContent, want: map[string]string{}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			status, msg := putSecrets(t, control, st.body)
			if status != st.wantStatus {
				t.Errorf("status %d (%s), want %d", status, strings.TrimSpace(msg), st.wantStatus)
			}
			if got := readSecrets(t, dir); !maps.Equal(got, st.want) {
				t.Errorf("secrets %q, want %q", got, st.want)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "keep")); err != nil || string(b) != "not ours" {
				t.Errorf("a file the agent did not write was touched: %q, %v", b, err)
			}
		})
	}
}

// TestPutSecretsAtomic reads a secret while it is being replaced: every read
// sees one whole value, never a mix or an empty file.
func TestPutSecretsAtomic(t *testing.T) {
	dir := t.TempDir()
	_, control, _, _ := startAgentWith(t, nil, func(c *Config) { c.SecretsDir = dir })
	waitStatus(t, control)
	values := [][]byte{bytes.Repeat([]byte("a"), 256<<10), bytes.Repeat([]byte("b"), 256<<10)}
	if status, msg := putSecrets(t, control, secretsBody(t, map[string][]byte{"s": values[0]})); status != http.StatusNoContent {
		t.Fatalf("%d %s", status, msg)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(filepath.Join(dir, "s"))
			if err != nil || !(bytes.Equal(b, values[0]) || bytes.Equal(b, values[1])) {
				t.Errorf("read %d bytes, %v: not one whole value", len(b), err)
				return
			}
		}
	}()
	for i := range 20 {
		if status, msg := putSecrets(t, control, secretsBody(t, map[string][]byte{"s": values[i%2]})); status != http.StatusNoContent {
			t.Fatalf("%d %s", status, msg)
		}
	}
	close(stop)
	wg.Wait()
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}
