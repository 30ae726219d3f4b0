package network

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
)

// inNetNS runs fn on an OS thread that has joined the network namespace
// target, then moves the thread back to home. Some settings can only be
// made from inside a namespace: /proc/sys/net shows the namespace of the
// thread that opens it.
//
// fn runs on a goroutine of its own, locked to its thread: the caller's
// goroutine never changes namespace, and if the way back fails the
// goroutine ends still locked, which makes the runtime discard the thread
// rather than let other goroutines run in the worker's namespace.
func inNetNS(target, home netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(target); err != nil {
			// setns failed, so the thread is still where it was.
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		err := fn()
		if berr := netns.Set(home); berr != nil {
			errc <- errors.Join(err, fmt.Errorf("return to the host network namespace: %w", berr))
			return // still locked: the thread dies with the goroutine
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// writeSysctl sets a /proc/sys value in the calling thread's network
// namespace. A missing file is not an error when missingOK: a kernel
// without IPv6 has no IPv6 to turn off.
func writeSysctl(path, value string, missingOK bool) error {
	err := os.WriteFile(path, []byte(value), 0o644)
	if err != nil && missingOK && errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", path, value, err)
	}
	return nil
}
