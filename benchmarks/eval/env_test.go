package eval

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestCaptureEnvironment(t *testing.T) {
	proc := t.TempDir()
	os.WriteFile(filepath.Join(proc, "cpuinfo"), []byte("processor\t: 0\nmodel name\t: AMD EPYC\n"), 0o644)
	os.WriteFile(filepath.Join(proc, "meminfo"), []byte("MemTotal:       24576000 kB\nMemFree: 1 kB\n"), 0o644)
	outputs := map[string]string{
		"/opt/criu --version": "Version: 4.2.1\n",
		"pypy3 --version":     "Python 3.9.16 (7.3.11+dfsg-2+deb12u3, Dec 30 2024, 22:36:23)\n[PyPy 7.3.11 with GCC 12.2.0]\n",
		"java -version":       "openjdk version \"17.0.15\" 2025-04-15\nOpenJDK Runtime Environment\n",
	}
	cmd := func(_ context.Context, name string, args ...string) (string, error) {
		key := name
		for _, a := range args {
			key += " " + a
		}
		if out, ok := outputs[key]; ok {
			return out, nil
		}
		return "", errors.New("not found")
	}
	e := captureEnvironment(context.Background(), envProbe{CRIU: "/opt/criu", Build: "v1 (abc)", Command: cmd, Proc: proc})
	want := map[string]string{"criu": "Version: 4.2.1", "pypy": "PyPy 7.3.11 with GCC 12.2.0", "java": `openjdk version "17.0.15" 2025-04-15`,
		"node": "absent", "cpu": "AMD EPYC", "memory": "23.4 GiB", "pronghorn": "v1 (abc)"}
	for k, v := range want {
		if e[k] != v {
			t.Errorf("%s = %q, want %q", k, e[k], v)
		}
	}
	for _, k := range environmentKeys() {
		if e[k] == "" {
			t.Errorf("%s not recorded", k)
		}
	}

	// Stored once per content, read back as written.
	dir := t.TempDir()
	h, err := writeEnvironment(dir, e)
	if err != nil || h != e.Hash() || len(h) != 12 {
		t.Fatalf("hash %q, %v", h, err)
	}
	envs, err := readEnvironments(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(envs[h], e) {
		t.Errorf("read back %v", envs[h])
	}
	other := Environment{"kernel": "x"}
	if other.Hash() == e.Hash() {
		t.Error("different environments share a hash")
	}
}
