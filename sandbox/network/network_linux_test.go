package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

const (
	reachable = 3 * time.Second
	// blocked is how long a dropped probe waits: drops give no answer.
	blocked = 300 * time.Millisecond
)

// TestFirewall proves what a worker can and cannot reach, with the default
// configuration.
func TestFirewall(t *testing.T) {
	l := newLab(t)
	m := newManager(t, Config{})
	wa, wb := startWorker(t), startWorker(t)
	a, b := attach(t, m, "aaaaaaaaaa", wa), attach(t, m, "bbbbbbbbbb", wb)
	gw := m.Gateway()

	outside := l.serve(t, l.outside, netip.IPv4Unspecified())
	api := l.serve(t, l.host, netip.IPv4Unspecified()) // the provider's API port, on every host address
	dnsPort := netip.AddrPortFrom(hostIP, 53)          // a nameserver on the host itself
	l.serveOn(t, l.host, dnsPort)
	l.serveOn(t, l.outside, netip.AddrPortFrom(metadata, 53))
	peer := l.serve(t, wb.ns, netip.IPv4Unspecified())
	self := l.serve(t, wa.ns, netip.IPv4Unspecified())

	// Positive controls: every server answers someone.
	for _, c := range []struct {
		ns   netns.NsHandle
		addr netip.AddrPort
	}{{l.host, api.at(hostIP)}, {l.host, dnsPort}, {l.host, outside.at(outsideIP)}, {wb.ns, peer.at(b.IP)}} {
		if _, err := l.probeTCP(c.ns, c.addr, reachable); err != nil {
			t.Fatalf("control: %s not answering: %v", c.addr, err)
		}
	}

	for _, tc := range []struct {
		name string
		from netns.NsHandle
		udp  bool
		to   netip.AddrPort
		// want is the client address the server should see, "" for blocked.
		want string
	}{
		{"worker to outside, TCP, masqueraded", wa.ns, false, outside.at(outsideIP), hostIP.String()},
		{"worker to outside, UDP, masqueraded", wa.ns, true, outside.at(outsideIP), hostIP.String()},
		{"second worker to outside", wb.ns, false, outside.at(outsideIP), hostIP.String()},
		{"worker to host API port on the host's address", wa.ns, false, api.at(hostIP), ""},
		{"worker to host API port on the gateway", wa.ns, false, api.at(gw), ""},
		{"worker to host UDP", wa.ns, true, api.at(hostIP), ""},
		{"worker to the host's nameserver on 53/udp", wa.ns, true, dnsPort, a.IP.String()},
		{"worker to the host's nameserver on 53/tcp", wa.ns, false, dnsPort, a.IP.String()},
		{"worker to another worker", wa.ns, false, peer.at(b.IP), ""},
		{"worker to another worker, UDP", wa.ns, true, peer.at(b.IP), ""},
		{"worker to metadata service", wa.ns, false, outside.at(metadata), ""},
		{"worker to link-local nameserver on 53/udp", wa.ns, true, netip.AddrPortFrom(metadata, 53), hostIP.String()},
		{"host to worker", l.host, false, self.at(a.IP), gw.String()},
		{"worker to itself", wa.ns, false, self.at(a.IP), a.IP.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			timeout := reachable
			if tc.want == "" {
				timeout = blocked
			}
			var got string
			var err error
			if tc.udp {
				got, err = l.probeUDP(tc.from, netip.Addr{}, tc.to, timeout)
			} else {
				got, err = l.probeTCP(tc.from, tc.to, timeout)
			}
			switch {
			case tc.want == "" && err == nil:
				t.Fatalf("reached %s (seen as %s); want it blocked", tc.to, got)
			case tc.want == "" && !isTimeout(err):
				// A drop is silent; a refusal would mean something answered.
				t.Fatalf("probe of %s: %v; want a timeout", tc.to, err)
			case tc.want != "" && err != nil:
				t.Fatalf("probe of %s: %v", tc.to, err)
			case got != tc.want:
				t.Fatalf("server saw the client as %s, want %s", got, tc.want)
			}
		})
	}

	t.Run("no spoofing", func(t *testing.T) {
		// Worker A takes B's address as well and sends from it.
		l.in(t, wa.ns, func() error {
			eth0, err := netlink.LinkByName(WorkerIf)
			if err != nil {
				return err
			}
			return netlink.AddrAdd(eth0, &netlink.Addr{IPNet: ipNet(b.IP)})
		})
		defer l.in(t, wa.ns, func() error {
			eth0, err := netlink.LinkByName(WorkerIf)
			if err != nil {
				return err
			}
			return netlink.AddrDel(eth0, &netlink.Addr{IPNet: ipNet(b.IP)})
		})
		outside.drain()
		if got, err := l.probeUDP(wa.ns, b.IP, outside.at(outsideIP), blocked); err == nil || !isTimeout(err) {
			t.Fatalf("spoofed datagram: answer %q, err %v; want it dropped", got, err)
		}
		select {
		case from := <-outside.hits:
			t.Fatalf("outside got a datagram with a spoofed source (seen as %s)", from)
		default:
		}
		if _, err := l.probeUDP(wa.ns, a.IP, outside.at(outsideIP), reachable); err != nil {
			t.Fatalf("control from A's own address: %v", err)
		}
	})

	t.Run("worker interface", func(t *testing.T) {
		l.in(t, wa.ns, func() error {
			eth0, err := netlink.LinkByName(WorkerIf)
			if err != nil {
				return err
			}
			if eth0.Attrs().MTU != m.MTU() {
				return fmt.Errorf("eth0 mtu %d, want %d", eth0.Attrs().MTU, m.MTU())
			}
			if v6, err := netlink.AddrList(eth0, netlink.FAMILY_V6); err != nil || len(v6) != 0 {
				return fmt.Errorf("eth0 IPv6 addresses %v (%v), want none", v6, err)
			}
			v, err := os.ReadFile("/proc/sys/net/ipv6/conf/eth0/disable_ipv6")
			if err != nil || strings.TrimSpace(string(v)) != "1" {
				return fmt.Errorf("eth0 disable_ipv6 = %q (%v), want 1", v, err)
			}
			routes, err := netlink.RouteList(eth0, netlink.FAMILY_V4)
			if err != nil {
				return err
			}
			var got []string
			for _, r := range routes {
				got = append(got, fmt.Sprintf("dst=%v gw=%v scope=%v", r.Dst, r.Gw, r.Scope))
			}
			want := []string{"dst=0.0.0.0/0 gw=10.62.0.1 scope=universe", "dst=10.62.0.1/32 gw=<nil> scope=link"}
			if strings.Join(got, ";") != strings.Join(want, ";") {
				// order from the kernel: the default route first
				return fmt.Errorf("worker routes %q, want %q", got, want)
			}
			return nil
		})
		host, err := netlink.LinkByName(a.HostIf)
		must(t, err)
		if v6, err := netlink.AddrList(host, netlink.FAMILY_V6); err != nil || len(v6) != 0 {
			t.Errorf("host end IPv6 addresses %v (%v), want none", v6, err)
		}
		if !strings.Contains(string(a.ResolvConf), "nameserver 10.99.0.1\nnameserver 169.254.169.254\n") {
			t.Errorf("resolv.conf:\n%s", a.ResolvConf)
		}
		if a.Gateway != gw || a.HostIf != "phvaaaaaaaaaa" || !m.Subnet().Contains(a.IP) || a.IP == b.IP {
			t.Errorf("attachments %+v, %+v", a, b)
		}
	})

	t.Run("ruleset", func(t *testing.T) {
		nft, err := exec.LookPath("nft")
		if err != nil {
			t.Skip("nft not installed to list the ruleset")
		}
		out, err := exec.Command(nft, "list", "table", "inet", "pronghorn").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list: %v\n%s", err, out)
		}
		t.Logf("ruleset:\n%s", out)
		for _, want := range []string{
			`iifname "phv*" meta nfproto != ipv4`,
			`iifname "phv*" fib saddr . iif oif missing counter`,
			`iifname "phv*" ct state new fib daddr type local counter`,
			`iifname "phv*" oifname "phv*" counter`,
			`ip daddr 169.254.0.0/16 counter`,
			`ip saddr 10.62.0.0/16 oifname != "phv*" masquerade`,
		} {
			if !strings.Contains(string(out), want) {
				t.Errorf("ruleset lacks %q", want)
			}
		}
	})
}

// TestConfigurableDestinations: link-local can be allowed, more can be denied.
func TestConfigurableDestinations(t *testing.T) {
	l := newLab(t)
	outside := l.serve(t, l.outside, netip.IPv4Unspecified())
	for _, tc := range []struct {
		name       string
		cfg        Config
		metadataOK bool
		outsideOK  bool
	}{
		{"default", Config{}, false, true},
		{"allow link-local", Config{AllowLinkLocal: true}, true, true},
		{"deny the outside subnet", Config{AllowLinkLocal: true, DenyDestinations: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/25")}}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, tc.cfg)
			w := startWorker(t)
			attach(t, m, "w", w)
			for _, p := range []struct {
				to netip.Addr
				ok bool
			}{{metadata, tc.metadataOK}, {outsideIP, tc.outsideOK}} {
				timeout := reachable
				if !p.ok {
					timeout = blocked
				}
				_, err := l.probeTCP(w.ns, outside.at(p.to), timeout)
				if p.ok && err != nil {
					t.Errorf("%s: %v, want reachable", p.to, err)
				}
				if !p.ok && err == nil {
					t.Errorf("%s reachable, want blocked", p.to)
				}
			}
		})
	}
}

// TestForeignForwardChain: with iptables' FORWARD policy at DROP, as Docker
// sets it, workers reach outside only because New accepts their interfaces
// there too; Close takes those rules away again.
func TestForeignForwardChain(t *testing.T) {
	l := newLab(t)
	iptables, err := exec.LookPath("iptables")
	if err != nil {
		t.Skip("iptables not installed")
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(iptables, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("iptables %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if v := run("--version"); !strings.Contains(v, "nf_tables") {
		t.Skipf("iptables is not iptables-nft: %s", v)
	}
	run("-P", "FORWARD", "DROP")
	t.Cleanup(func() {
		_ = exec.Command(iptables, "-P", "FORWARD", "ACCEPT").Run()
		conn, err := nftables.New()
		if err == nil {
			conn.DelTable(&nftables.Table{Name: "filter", Family: nftables.TableFamilyIPv4})
			_ = conn.Flush()
		}
	})
	outside := l.serve(t, l.outside, netip.IPv4Unspecified())

	for _, tc := range []struct {
		name  string
		leave bool
	}{{"rules inserted", false}, {"LeaveForeignChains", true}} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(context.Background(), Config{LeaveForeignChains: tc.leave, Nameservers: []netip.Addr{hostIP}})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(context.Background())
			w := startWorker(t)
			attach(t, m, "w", w)
			rules := run("-S", "FORWARD")
			t.Logf("iptables -S FORWARD:\n%s", rules)
			timeout := reachable
			if tc.leave {
				timeout = blocked
			}
			_, err = l.probeTCP(w.ns, outside.at(outsideIP), timeout)
			if tc.leave {
				if err == nil {
					t.Fatal("reached outside through a FORWARD policy DROP nobody accepted in")
				}
				if len(m.ForeignChains()) != 0 || strings.Contains(rules, "phv") {
					t.Fatalf("touched %v with LeaveForeignChains", m.ForeignChains())
				}
				return
			}
			if err != nil {
				t.Fatalf("worker to outside with FORWARD policy DROP: %v", err)
			}
			if got := m.ForeignChains(); len(got) != 1 || got[0] != "ip filter FORWARD" {
				t.Fatalf("ForeignChains %v", got)
			}
			// iptables-nft shows our rules as its own, the tag as a comment.
			comment := `-m comment --comment "pronghorn workers: filtered in table inet pronghorn" -j ACCEPT`
			for _, want := range []string{"-P FORWARD DROP", "-A FORWARD -i phv+ " + comment, "-A FORWARD -o phv+ " + comment} {
				if !strings.Contains(rules, want) {
					t.Errorf("iptables -S lacks %q", want)
				}
			}
			// The worker stays fenced in: our drop is final whatever FORWARD accepts.
			peerW := startWorker(t)
			pa := attach(t, m, "peer", peerW)
			peer := l.serve(t, peerW.ns, netip.IPv4Unspecified())
			if _, err := l.probeTCP(w.ns, peer.at(pa.IP), blocked); err == nil {
				t.Fatal("worker reached another worker")
			}
			must(t, m.Close(context.Background()))
			if after := run("-S", "FORWARD"); strings.Contains(after, "phv") || !strings.Contains(after, "-P FORWARD DROP") {
				t.Fatalf("after Close:\n%s", after)
			}
		})
	}
}

// TestDetach: Detach removes the pair and frees the address; a worker whose
// namespace died has lost its pair already, and Detach still frees the
// address.
func TestDetach(t *testing.T) {
	newLab(t)
	ctx := context.Background()
	var logs bytes.Buffer
	m := newManager(t, Config{
		Subnet:      netip.MustParsePrefix("10.62.0.0/29"), // five addresses
		DetachGrace: 100 * time.Millisecond,
		Logger:      slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	w := startWorker(t)
	a := attach(t, m, "w1", w)
	if !linkExists(t, a.HostIf) || m.Attached() != 1 {
		t.Fatalf("after Attach: link %v, attached %d", linkExists(t, a.HostIf), m.Attached())
	}
	must(t, m.Detach(ctx, "w1"))
	if linkExists(t, a.HostIf) || m.Attached() != 0 {
		t.Fatalf("after Detach: link %v, attached %d", linkExists(t, a.HostIf), m.Attached())
	}
	if err := inNetNS(w.ns, m.hostNS, func() error {
		if _, err := netlink.LinkByName(WorkerIf); !isNotFound(err) {
			return fmt.Errorf("worker's eth0 still there after Detach (%v)", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	must(t, m.Detach(ctx, "w1")) // twice is fine
	must(t, m.Detach(ctx, "never attached"))

	// The same namespace can be attached again, and the whole subnet
	// cycles through without running out: every address came back.
	for i := range 12 {
		a := attach(t, m, "w1", w)
		if i == 0 && a.IP == netip.MustParseAddr("10.62.0.2") {
			t.Errorf("address %s reused at once", a.IP)
		}
		must(t, m.Detach(ctx, "w1"))
	}

	// A worker that exits: the kernel deletes the pair with its
	// namespace, and Detach waits for that instead of deleting it.
	dying := startWorker(t)
	d := attach(t, m, "dying", dying)
	dying.ns.Close() // our handle would keep the namespace alive
	dying.exit()
	t0 := time.Now()
	must(t, m.Detach(ctx, "dying"))
	t.Logf("Detach of an exited worker returned after %v", time.Since(t0))
	if linkExists(t, d.HostIf) || m.Attached() != 0 {
		t.Fatal("Detach returned before the exited worker's pair was gone")
	}
	if logs.String() != "" {
		t.Fatalf("Detach of an exited worker: %s", logs.String())
	}

	// A namespace that outlives its processes (here: held by a handle)
	// keeps its pair: Detach waits DetachGrace, then deletes it.
	held := startWorker(t)
	h := attach(t, m, "held", held)
	held.exit()
	t0 = time.Now()
	must(t, m.Detach(ctx, "held"))
	if waited := time.Since(t0); waited < 100*time.Millisecond {
		t.Fatalf("Detach deleted a dead worker's pair after %v, before the grace", waited)
	}
	if linkExists(t, h.HostIf) || !strings.Contains(logs.String(), "outlived") {
		t.Fatalf("held namespace: link %v, log %q", linkExists(t, h.HostIf), logs.String())
	}
}

// TestAttachErrors: refusals, and a failed Attach leaves nothing behind.
func TestAttachErrors(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	m := newManager(t, Config{Subnet: netip.MustParsePrefix("10.62.0.0/30")}) // one address
	w := startWorker(t)
	attach(t, m, "w", w)

	if _, err := m.Attach(ctx, "w", w.path); !errors.Is(err, ErrAttached) {
		t.Errorf("same id again: %v, want ErrAttached", err)
	}
	if _, err := m.Attach(ctx, "x", startWorker(t).path); !errors.Is(err, ErrExhausted) {
		t.Errorf("full subnet: %v, want ErrExhausted", err)
	}
	if _, err := m.Attach(ctx, "host", fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), os.Getpid())); err == nil || !strings.Contains(err.Error(), "host's network namespace") {
		t.Errorf("the host's namespace: %v", err)
	}
	if _, err := m.Attach(ctx, "nope", "/proc/self/nonexistent"); err == nil {
		t.Error("a missing namespace path attached")
	}
	must(t, m.Detach(ctx, "w"))

	// A namespace that has an eth0 already: the pair cannot be made.
	busy := startWorker(t)
	l.in(t, busy.ns, func() error {
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: WorkerIf}, PeerName: "other"})
	})
	if _, err := m.Attach(ctx, "busy", busy.path); err == nil {
		t.Fatal("attached into a namespace with an eth0")
	}
	if linkExists(t, hostIfName("phv", "busy")) || m.Attached() != 0 {
		t.Fatal("a failed Attach left its link or address behind")
	}
	attach(t, m, "w", w) // the address is free again

	ctx2, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.Attach(ctx2, "c", w.path); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}

	must(t, m.Close(ctx))
	if _, err := m.Attach(ctx, "late", startWorker(t).path); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
	if linkExists(t, "phvw") {
		t.Error("Close left a worker's link")
	}
}

// TestNewReplacesAndCleansUp: New deletes stale pairs, replaces whatever
// our table holds, refuses a prefix a non-veth uses; Cleanup removes all.
func TestNewReplacesAndCleansUp(t *testing.T) {
	newLab(t)
	ctx := context.Background()
	cfg := Config{Nameservers: []netip.Addr{hostIP}}

	// A stale pair, both ends on the host, and junk in our table.
	stale := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "phvstale"}, PeerName: "phvstalepeer"}
	must(t, netlink.LinkAdd(stale))
	conn, err := nftables.New()
	must(t, err)
	tbl := conn.AddTable(ourTable("pronghorn"))
	conn.AddChain(&nftables.Chain{Name: "junk", Table: tbl})
	must(t, conn.Flush())

	t0 := time.Now()
	m1, err := New(ctx, cfg)
	must(t, err)
	t.Logf("New took %v", time.Since(t0))
	if linkExists(t, "phvstale") || linkExists(t, "phvstalepeer") {
		t.Fatal("New left a stale pair")
	}
	if got := chains(t, "pronghorn"); got != "forward input postrouting prerouting" {
		out, _ := exec.Command("nft", "list", "ruleset").CombinedOutput()
		t.Fatalf("chains after New: %s\n%s", got, out)
	}

	// While m1 runs, a second Manager with its settings is refused.
	if _, err := New(ctx, cfg); !errors.Is(err, ErrInUse) {
		t.Fatalf("a second New beside a live Manager: %v, want ErrInUse", err)
	}
	// A second New (a restarted provider that found the first's table)
	// replaces it in place. The kernel drops a crashed provider's lock.
	w := startWorker(t)
	attach(t, m1, "w", w) // a worker of the "crashed" run
	m1.owner.Close()
	m2, err := New(ctx, cfg)
	must(t, err)
	if linkExists(t, "phvw") {
		t.Fatal("New kept the earlier run's worker link")
	}
	if got := chains(t, "pronghorn"); got != "forward input postrouting prerouting" {
		t.Fatalf("chains after the second New: %s", got)
	}
	attach(t, m2, "w2", w)

	// Cleanup, as after a crash: no Manager.
	must(t, Cleanup(ctx, cfg))
	if tableExists(t, "pronghorn") || linkExists(t, "phvw2") {
		t.Fatal("Cleanup left the table or a worker link")
	}
	must(t, Cleanup(ctx, cfg)) // idempotent
	// The Managers' own Close after all that is harmless.
	must(t, m1.Close(ctx))
	must(t, m2.Close(ctx))

	// A subnet the host already has addresses in is refused.
	if _, err := New(ctx, Config{Subnet: netip.MustParsePrefix("10.99.0.0/16"), Nameservers: cfg.Nameservers}); err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Fatalf("New with a subnet overlapping pto0's: %v", err)
	}

	// A non-veth with our prefix would be firewalled as a worker: refused.
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "phvbridge"}}
	must(t, netlink.LinkAdd(br))
	defer netlink.LinkDel(br)
	if _, err := New(ctx, cfg); err == nil || !strings.Contains(err.Error(), "phvbridge") {
		t.Fatalf("New with a bridge named like a worker: %v", err)
	}
	if tableExists(t, "pronghorn") {
		t.Fatal("a failed New left its table")
	}
}

// TestRefresh: a flush of the whole ruleset (nft flush ruleset, a
// firewall reload) takes our table with it and the host is open to
// workers; Refresh puts it back.
func TestRefresh(t *testing.T) {
	l := newLab(t)
	m := newManager(t, Config{})
	w := startWorker(t)
	attach(t, m, "w", w)
	api := l.serve(t, l.host, netip.IPv4Unspecified())
	if _, err := l.probeTCP(w.ns, api.at(hostIP), blocked); err == nil {
		t.Fatal("worker reached the host")
	}
	conn, err := nftables.New()
	must(t, err)
	conn.FlushRuleset()
	must(t, conn.Flush())
	if _, err := l.probeTCP(w.ns, api.at(hostIP), reachable); err != nil {
		t.Fatalf("control: without the ruleset the worker should reach the host: %v", err)
	}
	t0 := time.Now()
	must(t, m.Refresh(context.Background()))
	t.Logf("Refresh took %v", time.Since(t0))
	if _, err := l.probeTCP(w.ns, api.at(hostIP), blocked); err == nil {
		t.Fatal("worker reached the host after Refresh")
	}
}

// TestForwarding: New turns IPv4 forwarding on (in the test's namespace).
func TestForwarding(t *testing.T) {
	newLab(t)
	must(t, os.WriteFile(ipForward, []byte("0"), 0o644))
	m := newManager(t, Config{})
	v, err := os.ReadFile(ipForward)
	must(t, err)
	if strings.TrimSpace(string(v)) != "1" || !m.EnabledForwarding() {
		t.Fatalf("ip_forward %q, EnabledForwarding %v", v, m.EnabledForwarding())
	}
	m.owner.Close() // as if it had crashed: a restarted provider's New
	m2 := newManager(t, Config{})
	if m2.EnabledForwarding() {
		t.Fatal("second New says it enabled forwarding that was on")
	}
}

// TestConcurrentAttach: many workers at once get distinct addresses and
// all reach outside.
func TestConcurrentAttach(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	m := newManager(t, Config{})
	outside := l.serve(t, l.outside, netip.IPv4Unspecified())
	const n = 16
	workers := make([]*worker, n)
	for i := range workers {
		workers[i] = startWorker(t)
	}
	var wg sync.WaitGroup
	ips := make([]netip.Addr, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			a, err := m.Attach(ctx, fmt.Sprintf("c%02d", i), workers[i].path)
			ips[i], errs[i] = a.IP, err
			if err == nil {
				_, errs[i] = l.probeTCP(workers[i].ns, outside.at(outsideIP), reachable)
			}
		})
	}
	wg.Wait()
	seen := map[netip.Addr]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("worker %d: %v", i, errs[i])
		}
		if seen[ips[i]] {
			t.Errorf("address %s handed out twice", ips[i])
		}
		seen[ips[i]] = true
	}
	for i := range n {
		wg.Go(func() { errs[i] = m.Detach(ctx, fmt.Sprintf("c%02d", i)) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("detach %d: %v", i, errs[i])
		}
	}
	if m.Attached() != 0 {
		t.Fatalf("attached %d", m.Attached())
	}
}

// BenchmarkAttachDetach measures Attach and Detach of a running worker,
// whose namespace exists already (making it is the agent's cost) and
// whose pair Detach therefore deletes itself.
func BenchmarkAttachDetach(b *testing.B) {
	newLab(b)
	ctx := context.Background()
	m := newManager(b, Config{})
	w := startWorker(b)
	var attachT, detachT time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := m.Attach(ctx, "bench", w.path); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := m.Detach(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
		attachT += t1.Sub(t0)
		detachT += time.Since(t1)
	}
	b.ReportMetric(float64(attachT.Nanoseconds())/float64(b.N), "attach-ns/op")
	b.ReportMetric(float64(detachT.Nanoseconds())/float64(b.N), "detach-ns/op")
}

// BenchmarkChurn is the provider's pattern: four workers at a time start,
// get attached, exit and get detached. It reports Attach's latency while
// other workers exit, which is what a cold start sees.
func BenchmarkChurn(b *testing.B) {
	newLab(b)
	ctx := context.Background()
	m := newManager(b, Config{})
	var mu sync.Mutex
	var lat []time.Duration
	var seq atomic.Int64
	b.SetParallelism(2) // 2 × GOMAXPROCS (2 here) goroutines
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("churn%d", seq.Add(1))
			w := startWorker(b)
			t0 := time.Now()
			if _, err := m.Attach(ctx, id, w.path); err != nil {
				b.Error(err)
				return
			}
			d := time.Since(t0)
			w.ns.Close()
			w.exit()
			if err := m.Detach(ctx, id); err != nil {
				b.Error(err)
			}
			mu.Lock()
			lat = append(lat, d)
			mu.Unlock()
		}
	})
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	b.ReportMetric(float64(sum.Nanoseconds())/float64(len(lat)), "attach-ns/op")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "attach-p99-ns")
}

func chains(t testing.TB, table string) string {
	t.Helper()
	conn, err := nftables.New()
	must(t, err)
	all, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	must(t, err)
	var names []string
	for _, c := range all {
		if c.Table.Name == table {
			names = append(names, c.Name)
		}
	}
	slices.Sort(names)
	return strings.Join(names, " ")
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// syncWriter lets a Manager log from several goroutines into one buffer.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
