package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// outside is a network namespace the test makes to stand for the world
// beyond the host: a veth to the host, an address of its own, and a TCP
// server. Tests never reach real external addresses.
type outside struct {
	hostAddr string // the host's end of the link
	server   string // host:port of the server inside
}

func newOutside(t *testing.T, subnet string) outside {
	t.Helper()
	name := fmt.Sprintf("pht-out-%d", os.Getpid()%100000)
	hostIf := fmt.Sprintf("pht%d", os.Getpid()%100000)
	o := outside{hostAddr: subnet + ".1"}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", name)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", hostIf).Run()
		_ = exec.Command("ip", "netns", "del", name).Run()
	})
	run("link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", name)
	run("addr", "add", subnet+".1/24", "dev", hostIf)
	run("link", "set", hostIf, "up")
	run("-n", name, "addr", "add", subnet+".2/24", "dev", "eth0")
	run("-n", name, "link", "set", "eth0", "up")
	run("-n", name, "link", "set", "lo", "up")

	l := listenIn(t, "/run/netns/"+name, subnet+".2:0")
	o.server = l.Addr().String()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "hello from outside")
			c.Close()
		}
	}()
	return o
}

// listenIn opens a TCP listener inside the network namespace at nsPath: a
// socket stays in the namespace it was made in.
func listenIn(t *testing.T, nsPath, addr string) net.Listener {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	ns, err := os.Open(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	l, listenErr := net.Listen("tcp", addr)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		panic("cannot return to the test's network namespace: " + err.Error())
	}
	if listenErr != nil {
		t.Fatal(listenErr)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
