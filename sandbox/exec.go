package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"
)

// initArg0 marks a process that Command started: it drops everything and
// becomes the function.
const initArg0 = "pronghorn-sandbox-init"

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

// Command returns a command that runs the program at path with argv as id,
// with no capabilities, no_new_privs and the seccomp Policy. os/exec cannot
// run code between fork and exec, so the calling binary executes itself
// (/proc/self/exe, which works after pivot_root too) and, marked by its
// argv[0], does so in its package initialisation before exec'ing the
// program: the function keeps the PID of the process started here.
func Command(id Identity, path string, argv []string) *exec.Cmd {
	args := append([]string{strconv.Itoa(id.UID), strconv.Itoa(id.GID), path}, argv...)
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Args[0] = initArg0
	return cmd
}

func init() {
	if len(os.Args) < 5 || os.Args[0] != initArg0 {
		return
	}
	err := becomeFunction(os.Args[1:])
	fmt.Fprintln(os.Stderr, "sandbox:", err)
	os.Exit(126)
}

// becomeFunction applies the restrictions and execs the function; it
// returns only on failure.
func becomeFunction(args []string) error {
	uid, err1 := strconv.Atoi(args[0])
	gid, err2 := strconv.Atoi(args[1])
	id := Identity{UID: uid, GID: gid}
	if err := errors.Join(err1, err2, id.Validate()); err != nil {
		return err
	}
	path, argv := args[2], args[3:]
	// The bounding set and the exec are per thread: keep them on one.
	runtime.LockOSThread()
	if err := dropBoundingSet(); err != nil {
		return err
	}
	// Go applies these to every thread. Leaving uid 0 clears the
	// permitted, effective and ambient capabilities.
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("setresgid %d: %w", gid, err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("setresuid %d: %w", uid, err)
	}
	filter := seccomp.Filter{NoNewPrivs: true, Flag: seccomp.FilterFlagTSync, Policy: Policy()}
	if err := seccomp.LoadFilter(filter); err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	err := unix.Exec(path, argv, os.Environ())
	return fmt.Errorf("exec %s: %w", path, err)
}

// dropBoundingSet empties the capability bounding set, so nothing the
// function executes can gain a capability back.
func dropBoundingSet() error {
	for c := 0; ; c++ {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if errors.Is(err, unix.EINVAL) {
			return nil // past the last capability this kernel knows
		}
		if err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
}
