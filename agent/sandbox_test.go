package agent

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pronghorn-openfaas/pronghorn/sandbox"
)

func TestSandboxImagesPath(t *testing.T) {
	dir := t.TempDir()
	images, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer images.Close()
	c := &confinement{imagesDir: dir, images: images}
	through := fmt.Sprintf("/proc/self/fd/%d", images.Fd())
	for _, tc := range []struct {
		host, want string // want "" for refused
	}{
		{dir + "/w1-dump-3", through + "/w1-dump-3"},
		{dir + "/images/ns/fn@v/r00001-w1", through + "/images/ns/fn@v/r00001-w1"},
		{dir, through},
		{dir + "/../elsewhere", ""},
		{dir + "/a/../../elsewhere", ""},
		{"/etc", ""},
		{dir + "x/y", ""},
	} {
		got, err := c.imagesPath(tc.host)
		if (err == nil) != (tc.want != "") || got != tc.want {
			t.Errorf("imagesPath(%q) = %q, %v; want %q", tc.host, got, err, tc.want)
		}
	}
	// The translated path reaches the directory.
	if err := os.Mkdir(dir+"/d", 0o700); err != nil {
		t.Fatal(err)
	}
	p, _ := c.imagesPath(dir + "/d")
	if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
		t.Errorf("stat %s: %v", p, err)
	}
}

func TestSandboxConfigValidate(t *testing.T) {
	good := SandboxConfig{Root: "/run/r", ImagesDir: "/var/lib/p/work", Identity: sandbox.Identity{UID: 1000, GID: 1000}}
	for _, tc := range []struct {
		name     string
		tune     func(*SandboxConfig)
		isolated bool
		want     string
	}{
		{"valid", func(*SandboxConfig) {}, true, ""},
		{"not isolated", func(*SandboxConfig) {}, false, "isolated"},
		{"relative root", func(s *SandboxConfig) { s.Root = "r" }, true, "absolute"},
		{"no images dir", func(s *SandboxConfig) { s.ImagesDir = "" }, true, "absolute"},
		{"root user", func(s *SandboxConfig) { s.Identity.UID = 0 }, true, "never root"},
	} {
		s := good
		tc.tune(&s)
		err := s.validate(tc.isolated)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
