package network

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The root tests run in a network namespace of their own: TestMain runs the
// test binary again in a fresh one, which stands in for "the host". So they
// never touch the real host's interfaces, nftables or ip_forward, cannot
// disturb anything else on the machine, and leave nothing behind even when
// killed: the namespace dies with the process. Inside it the tests build
//
//	outside ns  eth0 10.99.0.2/24 (+169.254.169.254/32)  servers listen here
//	     |
//	host  pto0 10.99.0.1/24   phv<id> 10.62.0.1/32 ...     (the test process)
//	                             |
//	worker ns                  eth0 10.62.x.y/32           a `sleep` process
//
// and attach workers with a Manager, as the provider will.

const labEnv = "PRONGHORN_NETWORK_TEST_NETNS"

var (
	outsideIP = netip.MustParseAddr("10.99.0.2")
	hostIP    = netip.MustParseAddr("10.99.0.1")
	metadata  = netip.MustParseAddr("169.254.169.254")
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 || os.Getenv(labEnv) != "" {
		if os.Getenv(labEnv) == "1" {
			if err := setUpLabHost(); err != nil {
				fmt.Fprintf(os.Stderr, "set up test namespace: %v\n", err)
				os.Exit(1)
			}
		}
		os.Exit(m.Run())
	}
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), labEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(err, &exit):
		os.Exit(exit.ExitCode())
	}
	// No network namespace for us: run here; the root tests skip.
	os.Setenv(labEnv, "unavailable: cannot run in a new network namespace: "+err.Error())
	os.Exit(m.Run())
}

func setUpLabHost() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(lo)
}

// needLab skips t unless it runs in the test's own namespace, as root,
// with nftables.
func needLab(t testing.TB) {
	t.Helper()
	switch v := os.Getenv(labEnv); {
	case os.Geteuid() != 0:
		t.Skip("needs root: creates network namespaces, veths and nftables tables")
	case v != "1":
		t.Skip(v)
	}
	conn, err := nftables.New()
	if err == nil {
		_, err = conn.ListTables()
	}
	if err != nil {
		t.Skipf("nftables unavailable: %v", err)
	}
}

// lab is the test's host namespace, with an outside namespace attached.
type lab struct {
	host    netns.NsHandle
	outside netns.NsHandle
}

func newLab(t testing.TB) *lab {
	t.Helper()
	needLab(t)
	host, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	l := &lab{host: host, outside: newNetNS(t, host)}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "pto0"
	veth := &netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(l.outside))}
	must(t, netlink.LinkAdd(veth))
	t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	must(t, netlink.AddrAdd(veth, &netlink.Addr{IPNet: prefixNet("10.99.0.1/24")}))
	must(t, netlink.LinkSetUp(veth))
	// The "metadata service" lives outside too, reached through it.
	must(t, netlink.RouteAdd(&netlink.Route{LinkIndex: veth.Index, Dst: ipNet(metadata), Gw: outsideIP.AsSlice()}))
	l.in(t, l.outside, func() error {
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		for _, err := range []error{
			netlink.AddrAdd(eth0, &netlink.Addr{IPNet: prefixNet("10.99.0.2/24")}),
			netlink.AddrAdd(eth0, &netlink.Addr{IPNet: ipNet(metadata)}),
			netlink.LinkSetUp(eth0),
			netlink.LinkSetUp(lo),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
	return l
}

// newNetNS makes a network namespace held by a handle only.
func newNetNS(t testing.TB, home netns.NsHandle) netns.NsHandle {
	t.Helper()
	var ns netns.NsHandle
	err := inNetNS(home, home, func() error {
		var err error
		ns, err = netns.New() // switches the thread; inNetNS switches it back
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// in runs fn in ns.
func (l *lab) in(t testing.TB, ns netns.NsHandle, fn func() error) {
	t.Helper()
	if err := inNetNS(ns, l.host, fn); err != nil {
		t.Fatal(err)
	}
}

// worker is a process in a network namespace of its own, as an agent is.
type worker struct {
	pid  int
	path string
	ns   netns.NsHandle
	exit func() // kills the process and waits for it, once
}

func startWorker(t testing.TB) *worker {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	w := &worker{pid: cmd.Process.Pid, path: fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)}
	w.exit = sync.OnceFunc(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	t.Cleanup(func() {
		w.exit()
		w.ns.Close() // a no-op if the test closed it: Close sets it to -1
	})
	ns, err := netns.GetFromPath(w.path)
	if err != nil {
		t.Fatal(err)
	}
	w.ns = ns
	// The agent brings its loopback up; so does this stand-in.
	home, err := netns.GetFromPath("/proc/self/ns/net") // the main thread's: the test's host
	if err != nil {
		t.Fatal(err)
	}
	defer home.Close()
	if err := inNetNS(ns, home, setUpLabHost); err != nil {
		t.Fatal(err)
	}
	return w
}

func newManager(t testing.TB, cfg Config) *Manager {
	t.Helper()
	if cfg.Nameservers == nil {
		cfg.Nameservers = []netip.Addr{hostIP, metadata}
	}
	m, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

func attach(t testing.TB, m *Manager, id string, w *worker) Attachment {
	t.Helper()
	a, err := m.Attach(context.Background(), id, w.path)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	return a
}

// server is a TCP and a UDP listener on one address and port, which answer
// with the address they see the client at.
type server struct {
	addr netip.AddrPort
	hits chan string // client addresses, TCP and UDP
}

func (l *lab) serve(t testing.TB, ns netns.NsHandle, ip netip.Addr) *server {
	t.Helper()
	return l.serveOn(t, ns, netip.AddrPortFrom(ip, 0))
}

// serveOn serves on addr; port 0 picks one.
func (l *lab) serveOn(t testing.TB, ns netns.NsHandle, addr netip.AddrPort) *server {
	t.Helper()
	s := &server{hits: make(chan string, 64)}
	var tl net.Listener
	var ul net.PacketConn
	l.in(t, ns, func() error {
		var err error
		if tl, err = net.Listen("tcp4", addr.String()); err != nil {
			return err
		}
		port := tl.Addr().(*net.TCPAddr).Port
		ul, err = net.ListenPacket("udp4", netip.AddrPortFrom(addr.Addr(), uint16(port)).String())
		return err
	})
	t.Cleanup(func() { tl.Close(); ul.Close() })
	s.addr = tl.Addr().(*net.TCPAddr).AddrPort()
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			from := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().String()
			s.hits <- from
			fmt.Fprintln(c, from)
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := ul.ReadFrom(buf)
			if err != nil {
				return
			}
			a := from.(*net.UDPAddr).AddrPort().Addr().String()
			s.hits <- a
			_, _ = ul.WriteTo([]byte(a+"\n"), from)
		}
	}()
	return s
}

// at is s's port on another address of the same namespace (s listens on
// the wildcard address for that).
func (s *server) at(ip netip.Addr) netip.AddrPort { return netip.AddrPortFrom(ip, s.addr.Port()) }

// drain forgets the hits so far.
func (s *server) drain() {
	for {
		select {
		case <-s.hits:
		default:
			return
		}
	}
}

// probeTCP connects from ns to addr and returns what the server says the
// client's address is.
func (l *lab) probeTCP(ns netns.NsHandle, addr netip.AddrPort, timeout time.Duration) (string, error) {
	var got string
	err := inNetNS(ns, l.host, func() error {
		c, err := net.DialTimeout("tcp4", addr.String(), timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		got, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	return strings.TrimSpace(got), err
}

// probeUDP sends a datagram from ns (from src, if valid) to addr and waits
// for the answer.
func (l *lab) probeUDP(ns netns.NsHandle, src netip.Addr, addr netip.AddrPort, timeout time.Duration) (string, error) {
	var got string
	err := inNetNS(ns, l.host, func() error {
		var laddr *net.UDPAddr
		if src.IsValid() {
			laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
		}
		c, err := net.DialUDP("udp4", laddr, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		got = string(buf[:n])
		return err
	})
	return strings.TrimSpace(got), err
}

func linkExists(t testing.TB, name string) bool {
	t.Helper()
	_, err := netlink.LinkByName(name)
	if err != nil && !isNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

func tableExists(t testing.TB, name string) bool {
	t.Helper()
	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.ListTableOfFamily(name, nftables.TableFamilyINet)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		t.Fatal(err)
	}
	return err == nil
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func prefixNet(s string) *net.IPNet {
	p := netip.MustParsePrefix(s)
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}
