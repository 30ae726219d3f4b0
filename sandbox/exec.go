package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"
)

// Setpriv is util-linux's, on every Debian system: it drops the user,
// groups and capabilities and sets no_new_privs between fork and exec,
// which os/exec cannot do, for about a millisecond; re-executing a Go
// binary for it costs ten.
const Setpriv = "/usr/bin/setpriv"

// Identity is the unprivileged user and group a function runs as.
type Identity struct {
	UID int `json:"uid"`
	GID int `json:"gid"`
}

// Validate refuses root, and ids the kernel cannot hold.
func (id Identity) Validate() error {
	if id.UID <= 0 || id.GID <= 0 || id.UID >= 1<<31 || id.GID >= 1<<31 {
		return fmt.Errorf("function uid:gid %d:%d: both must be between 1 and 2^31-1 (never root)", id.UID, id.GID)
	}
	return nil
}

// Command returns a command that runs the program at path with argv (whose
// first element names the program) as id, with no supplementary groups,
// empty capability sets and bounding set, and no_new_privs. Start it with
// Start, which adds the seccomp Policy.
func Command(id Identity, path string, argv []string) *exec.Cmd {
	args := []string{
		"--reuid=" + strconv.Itoa(id.UID), "--regid=" + strconv.Itoa(id.GID), "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", path,
	}
	if len(argv) > 1 {
		args = append(args, argv[1:]...)
	}
	return exec.Command(Setpriv, args...)
}

// Start starts cmd under the seccomp Policy. A filter is per thread and a
// child inherits its forking thread's, so cmd is started from a thread of
// its own that loads the filter first and is thrown away afterwards: the
// goroutine exits still locked to it, and the runtime ends the thread. The
// rest of the process (the agent, which needs mount and ptrace for CRIU)
// stays unfiltered.
func Start(cmd *exec.Cmd) error {
	if _, err := os.Stat(cmd.Path); err != nil {
		return fmt.Errorf("sandbox: %w (setpriv is util-linux's)", err)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			startFiltered(cmd, errc) // ends this thread
			return
		}
		// The runtime never ends the main thread, it parks it: keep the
		// filter off it, on a thread the locked main thread cannot be.
		defer runtime.UnlockOSThread()
		done := make(chan struct{})
		go func() {
			defer close(done)
			runtime.LockOSThread()
			startFiltered(cmd, errc)
		}()
		<-done
	}()
	return <-errc
}

// startFiltered runs on a locked thread that is never unlocked.
func startFiltered(cmd *exec.Cmd, errc chan<- error) {
	// As root, the agent may load a filter without no_new_privs; setpriv
	// sets it for the function before the exec.
	if err := seccomp.LoadFilter(seccomp.Filter{Policy: Policy()}); err != nil {
		errc <- fmt.Errorf("sandbox: seccomp: %w", err)
		return
	}
	errc <- cmd.Start()
}
