package agent

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSecretsTmpfsHoldsMaxSecrets mounts the secrets tmpfs as an isolated
// worker does (in a mount namespace of this test's own) and fills it with
// sets of MaxSecretsBytes in the shapes that waste most of it: every file
// one byte over a page, and many one-byte files, then updates them all.
func TestSecretsTmpfsHoldsMaxSecrets(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	page := os.Getpagesize()
	tests := []struct {
		name  string
		files int
		size  int
	}{
		{name: "files just over a page", files: MaxSecretsBytes / (page + 1), size: page + 1},
		{name: "many tiny files", files: 500, size: 1},
		{name: "one file of the maximum", files: 1, size: MaxSecretsBytes},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			errc := make(chan error, 1)
			go func() {
				// The thread leaves with its private mount namespace: never
				// unlocked, it is not reused.
				runtime.LockOSThread()
				errc <- fillSecretsTmpfs(t.TempDir(), tc.files, tc.size)
			}()
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func fillSecretsTmpfs(dir string, files, size int) error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	secrets := newSecretFiles(filepath.Join(dir, "secrets"))
	values := func(b byte) map[string][]byte {
		m := map[string][]byte{}
		for i := range files {
			m[fmt.Sprintf("secret-%d", i)] = bytes.Repeat([]byte{b}, size)
		}
		return m
	}
	if err := mountSecrets(secrets, values('a')); err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(secrets.dir, &st); err != nil {
		return err
	}
	if got := int64(st.Blocks) * st.Bsize; got != secretsTmpfsBytes {
		return fmt.Errorf("tmpfs is %d bytes, want %d", got, secretsTmpfsBytes)
	}
	if err := secrets.replace(values('b')); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	return nil
}
