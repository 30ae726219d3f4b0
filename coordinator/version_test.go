package coordinator

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openfaas/faas-provider/types"
)

func TestVersionChangesWithWhatTheProcessSees(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.js"), []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := func() VersionInputs {
		return VersionInputs{
			Dir: dir, Process: "node index.js", Runtime: "node",
			Env: map[string]string{"A": "1"}, Secrets: map[string][]byte{"key": []byte("s1")},
		}
	}
	d := newDigester()
	v0, err := d.version(base())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(*VersionInputs)
	}{
		{"fprocess", func(in *VersionInputs) { in.Process = "node other.js" }},
		{"runtime", func(in *VersionInputs) { in.Runtime = "pypy" }},
		{"env value", func(in *VersionInputs) { in.Env = map[string]string{"A": "2"} }},
		{"env added", func(in *VersionInputs) { in.Env = map[string]string{"A": "1", "B": ""} }},
		{"env split differently", func(in *VersionInputs) { in.Env = map[string]string{"A1": ""} }},
		{"secret value", func(in *VersionInputs) { in.Secrets = map[string][]byte{"key": []byte("s2")} }},
		{"secret name", func(in *VersionInputs) { in.Secrets = map[string][]byte{"other": []byte("s1")} }},
		{"memory limit", func(in *VersionInputs) { in.Limits = &types.FunctionResources{Memory: "64Mi"} }},
		{"cpu request", func(in *VersionInputs) { in.Requests = &types.FunctionResources{CPU: "100m"} }},
		{"read-only root", func(in *VersionInputs) { in.ReadOnly = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := base()
			tc.change(&in)
			v, err := d.version(in)
			if err != nil {
				t.Fatal(err)
			}
			if v == v0 {
				t.Errorf("version unchanged (%s)", v)
			}
		})
	}
	again, err := d.version(base())
	if err != nil || again != v0 {
		t.Fatalf("same inputs: %s, %v; want %s", again, err, v0)
	}
}

// A changed file is noticed even when its size stays the same, and so is a
// file added to the directory.
func TestVersionFollowsDirectoryContents(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "index.js")
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(file, "one")
	d := newDigester()
	in := VersionInputs{Dir: dir, Process: "node index.js"}
	v1, err := d.version(in)
	if err != nil {
		t.Fatal(err)
	}
	write(file, "two") // same size
	v2, _ := d.version(in)
	if v2 == v1 {
		t.Fatal("a changed file kept the version")
	}
	if err := os.Chtimes(file, time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if v, _ := d.version(in); v != v2 {
		t.Fatal("touching a file without changing it changed the version")
	}
	if err := os.Mkdir(filepath.Join(dir, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(dir, "lib", "x.js"), "x")
	if v3, _ := d.version(in); v3 == v2 {
		t.Fatal("an added file kept the version")
	}
	// A fresh digester (a restarted provider) agrees.
	again, _ := newDigester().version(in)
	if want, _ := d.version(in); again != want {
		t.Fatalf("restarted digester: %s, want %s", again, want)
	}
	if _, err := d.version(VersionInputs{Dir: filepath.Join(dir, "absent")}); err == nil {
		t.Fatal("a missing directory has a version")
	}
}

func TestEngineKeys(t *testing.T) {
	for _, tc := range []struct {
		fn, key, version string
		ours             bool
	}{
		{"ns/a", "ns/a@0123", "0123", true},
		{"ns/a", "ns/a", "", true}, // an unversioned key of an older provider
		{"ns/a", "ns/ab@0123", "", false},
		{"ns/a", "ns/a@", "", false},
		{"ns/a", "other/a@1", "", false},
	} {
		v, ours := versionOf(tc.fn, tc.key)
		if v != tc.version || ours != tc.ours {
			t.Errorf("versionOf(%q, %q) = %q, %v; want %q, %v", tc.fn, tc.key, v, ours, tc.version, tc.ours)
		}
	}
	if got := fnKeyOf(EngineKey("ns/a", "ff")); got != "ns/a" {
		t.Errorf("fnKeyOf = %q", got)
	}
}
