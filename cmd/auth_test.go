package cmd

import (
	"bytes"
	"context"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestEnsureBasicAuthFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "secrets")
	created, err := ensureBasicAuthFiles(dir)
	if err != nil || !created {
		t.Fatalf("first call: created %v, %v", created, err)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("dir mode %o, want 700", m)
	}
	user, password := filepath.Join(dir, authUserFile), filepath.Join(dir, authPasswordFile)
	for _, f := range []string{user, password} {
		if m := mode(t, f); m != 0o600 {
			t.Errorf("%s mode %o, want 600", filepath.Base(f), m)
		}
	}
	if got := readFile(t, user); got != "admin" {
		t.Errorf("user %q", got)
	}
	first := readFile(t, password)
	if _, err := hex.DecodeString(first); err != nil || len(first) < 32 {
		t.Errorf("password %q: want 32+ hex digits", first)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("temporary files left: %v", entries)
	}

	// A second start keeps what is there.
	if created, err := ensureBasicAuthFiles(dir); err != nil || created {
		t.Fatalf("second call: created %v, %v", created, err)
	}
	if got := readFile(t, password); got != first {
		t.Error("the password changed on the second call")
	}

	// Only what is missing is created; the operator's own user stays.
	if err := os.WriteFile(user, []byte("alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(password); err != nil {
		t.Fatal(err)
	}
	if created, err := ensureBasicAuthFiles(dir); err != nil || !created {
		t.Fatalf("after removing the password: created %v, %v", created, err)
	}
	if got := readFile(t, password); got == first || got == "" {
		t.Errorf("regenerated password %q (first %q)", got, first)
	}
	creds, err := readBasicAuth(dir)
	if err != nil || creds.User != "alice" {
		t.Errorf("read back: %+v, %v", creds, err)
	}
}

func TestLoadBasicAuth(t *testing.T) {
	logger := func() (*slog.Logger, *bytes.Buffer) {
		var buf bytes.Buffer
		return slog.New(slog.NewTextHandler(&buf, nil)), &buf
	}

	t.Run("local default generates once", func(t *testing.T) {
		data := t.TempDir()
		o := providerOptions{backend: "local", dataDir: data, basicAuth: true, port: 8080}
		log, buf := logger()
		creds, err := loadBasicAuth(o, log)
		if err != nil || creds == nil || creds.User != "admin" || len(creds.Password) < 32 {
			t.Fatalf("%+v, %v", creds, err)
		}
		want := filepath.Join(data, "secrets", authPasswordFile)
		if out := buf.String(); strings.Count(out, "generated basic auth credentials") != 1 || !strings.Contains(out, want) {
			t.Errorf("log does not name %s once:\n%s", want, out)
		}
		log, buf = logger()
		again, err := loadBasicAuth(o, log)
		if err != nil || *again != *creds {
			t.Errorf("second start: %+v, %v; want %+v", again, err, creds)
		}
		if strings.Contains(buf.String(), "generated") {
			t.Errorf("second start logged a generation:\n%s", buf)
		}
	})

	t.Run("named dir is read, never written", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "mount")
		o := providerOptions{backend: "local", dataDir: t.TempDir(), basicAuth: true, secretMountPath: dir}
		log, _ := logger()
		if _, err := loadBasicAuth(o, log); err == nil || !strings.Contains(err.Error(), "--basic-auth=false") {
			t.Errorf("missing files: %v", err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("the named dir was created: %v", err)
		}
		if _, err := os.Stat(filepath.Join(o.dataDir, "secrets")); !os.IsNotExist(err) {
			t.Errorf("credentials generated in the data dir although a dir was named: %v", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for name, v := range map[string]string{authUserFile: "ops\n", authPasswordFile: "s3cret\n"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		creds, err := loadBasicAuth(o, log)
		if err != nil || creds.User != "ops" || creds.Password != "s3cret" {
			t.Errorf("%+v, %v", creds, err)
		}
		if err := os.WriteFile(filepath.Join(dir, authPasswordFile), []byte(" \n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadBasicAuth(o, log); err == nil || !strings.Contains(err.Error(), "empty") {
			t.Errorf("empty password accepted: %v", err)
		}
	})

	t.Run("off warns and writes nothing", func(t *testing.T) {
		o := providerOptions{backend: "local", dataDir: t.TempDir(), basicAuth: false, port: 8080}
		log, buf := logger()
		creds, err := loadBasicAuth(o, log)
		if err != nil || creds != nil {
			t.Fatalf("%+v, %v", creds, err)
		}
		if !strings.Contains(buf.String(), "level=WARN") || !strings.Contains(buf.String(), "basic auth is OFF") {
			t.Errorf("no warning:\n%s", buf)
		}
		if _, err := os.Stat(filepath.Join(o.dataDir, "secrets")); !os.IsNotExist(err) {
			t.Errorf("credentials generated with basic auth off: %v", err)
		}
	})

	for _, tc := range []struct {
		name string
		o    providerOptions
		want authSource
	}{
		{"local", providerOptions{backend: "local", dataDir: "/d"}, authSource{dir: "/d/secrets", generate: true}},
		{"local named", providerOptions{backend: "local", dataDir: "/d", secretMountPath: "/m"}, authSource{dir: "/m"}},
		{"kubernetes", providerOptions{backend: "kubernetes", dataDir: "/d"}, authSource{dir: "/var/openfaas/secrets"}},
		{"kubernetes named", providerOptions{backend: "kubernetes", secretMountPath: "/m"}, authSource{dir: "/m"}},
	} {
		if got := tc.o.authSource(); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestSecureDefaults(t *testing.T) {
	cmd := newProviderCommand(BuildInfo{})
	for name, want := range map[string]string{"basic-auth": "true", "secret-mount-path": "", "allow-function-dir": "[]"} {
		if f := cmd.Flags().Lookup(name); f == nil || f.DefValue != want {
			t.Errorf("--%s default = %v, want %q", name, f, want)
		}
	}

	t.Setenv("basic_auth", "false")
	t.Setenv("allow_function_dirs", "/srv/a, /srv/b,,")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	var on bool
	var dirs []string
	if err := envBool(fs, &on, "basic-auth", "basic_auth", true, ""); err != nil {
		t.Fatal(err)
	}
	envStringArray(fs, &dirs, "allow-function-dir", "allow_function_dirs", "")
	if err := fs.Parse(nil); err != nil || on || !slices.Equal(dirs, []string{"/srv/a", "/srv/b"}) {
		t.Errorf("from env: auth %v dirs %q, %v", on, dirs, err)
	}
	// Flags win over the environment, and a flag value is never split.
	if err := fs.Parse([]string{"--basic-auth", "--allow-function-dir", "/srv/c,d", "--allow-function-dir", "/srv/e"}); err != nil ||
		!on || !slices.Equal(dirs, []string{"/srv/c,d", "/srv/e"}) {
		t.Errorf("flags over env: auth %v dirs %q, %v", on, dirs, err)
	}
}

func TestCheckLocalMakesDirsAbsolute(t *testing.T) {
	t.Chdir(t.TempDir())
	wd, _ := os.Getwd()
	o := validLocalOptions()
	o.functionsDir, o.allowFnDirs = "fns", []string{"extra", "/srv/x/../y"}
	if err := checkLocal(&o); err != nil {
		t.Fatal(err)
	}
	if o.functionsDir != filepath.Join(wd, "fns") || !slices.Equal(o.allowFnDirs, []string{filepath.Join(wd, "extra"), "/srv/y"}) {
		t.Errorf("functions dir %q, allowed %q", o.functionsDir, o.allowFnDirs)
	}
}

// validLocalOptions are the flags' defaults that checkLocal looks at.
func validLocalOptions() providerOptions {
	o := providerOptions{functionsDir: "/srv/fns", functionUID: 1000, functionGID: 1000, workerTmpMiB: 128,
		workerNetwork: true, workerSubnet: "10.62.0.0/16", workerIfPrefix: "phv"}
	o.snapshots.engine = orchestrator.DefaultConfig()
	return o
}

func TestCheckLocalSandboxSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		tune func(*providerOptions)
		want string // in the error; "" for none
	}{
		{"defaults", func(*providerOptions) {}, ""},
		{"function as root", func(o *providerOptions) { o.functionUID = 0 }, "never root"},
		{"negative gid", func(o *providerOptions) { o.functionGID = -5 }, "never root"},
		{"no /tmp", func(o *providerOptions) { o.workerTmpMiB = 0 }, "--worker-tmp-mib"},
		{"huge /tmp", func(o *providerOptions) { o.workerTmpMiB = 1 << 40 }, "--worker-tmp-mib"},
		{"subnet not a prefix", func(o *providerOptions) { o.workerSubnet = "10.62.0.1" }, "--worker-subnet"},
		{"IPv6 subnet", func(o *providerOptions) { o.workerSubnet = "fd00::/64" }, "IPv4"},
		{"prefix too long", func(o *providerOptions) { o.workerIfPrefix = "waytoolongprefix" }, "prefix"},
		{"network off ignores the subnet", func(o *providerOptions) { o.workerNetwork, o.workerSubnet = false, "junk" }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := validLocalOptions()
			tc.tune(&o)
			err := checkLocal(&o)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			case tc.want == "" && o.workerNetwork && (o.network == nil || o.network.Table != "pronghorn-phv"):
				t.Fatalf("network config %+v", o.network)
			}
		})
	}
}

func TestFetchStateCredentials(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "admin" || p != "pw" {
			http.Error(w, "invalid credentials", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	ctx := context.Background()
	if _, err := fetchState(ctx, srv.Client(), srv.URL, "f", "", "admin", "pw"); err != nil {
		t.Errorf("with credentials: %v", err)
	}
	_, err := fetchState(ctx, srv.Client(), srv.URL, "f", "", "admin", "")
	if err == nil || !strings.Contains(err.Error(), "basic_auth_password") || strings.ContainsAny(err.Error(), "\r\n") {
		t.Errorf("without credentials: %v", err)
	}
}
