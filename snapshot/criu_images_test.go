package snapshot_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pronghorn-openfaas/pronghorn/snapshot/snapshottest"

	"golang.org/x/sys/unix"
)

// TestRestoreDamagedImages restores a real dump of sleep(1) whose images
// were damaged in the ways a bad snapshot can be, and checks that exactly the
// damage is reported as ErrCorrupt. A truncated pages image is left out:
// criu 4.2 hangs on it instead of failing.
func TestRestoreDamagedImages(t *testing.T) {
	criu := snapshottest.CRIU(t)
	images := t.TempDir()
	res, err := spawnWorker(t, workerConfig{Mode: modeDumpSleep, CRIU: criu, ImagesDir: images, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatalf("dump: %v\n%s", err, res.Log)
	}
	pid := res.Pids[0]
	image := func(t *testing.T, dir, prefix string) string {
		m, _ := filepath.Glob(filepath.Join(dir, prefix+"*"))
		if len(m) != 1 {
			t.Fatalf("images %s*: %v", prefix, m)
		}
		return m[0]
	}
	truncate := func(prefix string) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			p := image(t, dir, prefix)
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}
	}
	overwrite := func(prefix string, off int64) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			f, err := os.OpenFile(image(t, dir, prefix), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef}, off); err != nil {
				t.Fatal(err)
			}
		}
	}
	remove := func(prefix string) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			if err := os.Remove(image(t, dir, prefix)); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name        string
		damage      func(*testing.T, string)
		takePid     int
		wantCorrupt bool
		wantInError string
	}{
		{name: "intact"},
		{name: "core truncated", damage: truncate("core-"), wantCorrupt: true, wantInError: "bytes while"},
		{name: "mm truncated", damage: truncate("mm-"), wantCorrupt: true, wantInError: "mm-"},
		{name: "pagemap truncated", damage: truncate("pagemap-"), wantCorrupt: true, wantInError: "pagemap-"},
		{name: "inventory bad magic", damage: overwrite("inventory", 0), wantCorrupt: true, wantInError: "Magic doesn't match for inventory.img"},
		{name: "core bad magic", damage: overwrite("core-", 0), wantCorrupt: true, wantInError: "magic doesn't match"},
		{name: "mm record garbled", damage: overwrite("mm-", 12), wantCorrupt: true, wantInError: "Failed unpacking object"},
		{name: "core record garbled", damage: overwrite("core-", 12), wantCorrupt: true, wantInError: "Failed unpacking object"},
		{name: "inventory missing", damage: remove("inventory"), wantCorrupt: true, wantInError: "inventory.img is missing"},
		{name: "pstree missing", damage: remove("pstree"), wantCorrupt: true, wantInError: "pstree.img is missing"},
		{name: "core missing", damage: remove("core-"), wantCorrupt: true, wantInError: "Unexpected EOF"},
		{name: "pages missing", damage: remove("pages-"), wantCorrupt: true, wantInError: "Can't read pages data"},
		{name: "pid taken", takePid: pid, wantInError: "File exists"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "images")
			if err := os.CopyFS(dir, os.DirFS(images)); err != nil {
				t.Fatal(err)
			}
			if tc.damage != nil {
				tc.damage(t, dir)
			}
			res, err := spawnWorker(t, workerConfig{Mode: modeRestoreImages, CRIU: criu, ImagesDir: dir, WorkDir: t.TempDir(), TakePid: tc.takePid})
			if tc.wantInError == "" {
				if err != nil {
					t.Fatalf("restore: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("restore succeeded")
			}
			msg := err.Error()
			t.Logf("error: %s", msg)
			if res.Corrupt != tc.wantCorrupt {
				t.Errorf("wraps ErrCorrupt = %v, want %v", res.Corrupt, tc.wantCorrupt)
			}
			if !strings.Contains(strings.ToLower(msg), strings.ToLower(tc.wantInError)) {
				t.Errorf("error does not mention %q", tc.wantInError)
			}
			if strings.Contains(msg, "\n") || strings.Contains(msg, "RLIMIT_NOFILE") {
				t.Errorf("error is not the one line naming the cause")
			}
		})
	}
}

// TestDumpOnFullDisk dumps into a tmpfs too small for the images: the error
// must name the full disk, not the first (harmless) error in criu's log.
func TestDumpOnFullDisk(t *testing.T) {
	criu := snapshottest.CRIU(t)
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=16k"); err != nil {
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	res, err := spawnWorker(t, workerConfig{Mode: modeDumpSleep, CRIU: criu, ImagesDir: mnt, WorkDir: t.TempDir()})
	if err == nil {
		t.Fatalf("dump into a 16k tmpfs succeeded\n%s", res.Log)
	}
	msg := err.Error()
	t.Logf("error: %s", msg)
	if !strings.Contains(msg, "No space left on device") || strings.Contains(msg, "RLIMIT") || strings.Contains(msg, "\n") {
		t.Errorf("error does not name the full disk in one line")
	}
	if res.Corrupt {
		t.Error("a failed dump must not read as a corrupt snapshot")
	}
}
