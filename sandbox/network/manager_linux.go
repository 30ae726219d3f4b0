package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	ipForward = "/proc/sys/net/ipv4/ip_forward"
	// detachPoll is how often Detach looks whether the kernel has
	// deleted an exited worker's pair.
	detachPoll = 2 * time.Millisecond
)

// Manager gives workers' network namespaces egress through the host. It is
// safe for concurrent use. Create it with New, once per provider.
type Manager struct {
	cfg         Config
	gateway     netip.Addr
	hostNS      netns.NsHandle  // the namespace New ran in: "the host"
	nl          *netlink.Handle // rtnetlink, bound to hostNS
	owner       *os.File        // flock'ed while this Manager owns the table and prefix
	nameservers []netip.Addr
	resolv      []byte

	// fwMu serialises changes to the ruleset (New, Refresh, Close).
	fwMu     sync.Mutex
	foreign  []string
	released bool // Close removed the ruleset and closed the handles

	enabledForwarding bool

	mu      sync.Mutex
	closed  bool
	alloc   *allocator
	workers map[string]*attachment // by worker id
	ifNames map[string]string      // host interface name -> worker id
}

// attachment is the Manager's record of one worker.
type attachment struct {
	// mu is held while the pair is made or removed, so a Detach that
	// races an Attach of the same worker waits for it.
	mu     sync.Mutex
	id     string
	hostIf string
	ip     netip.Addr
	// nsPath and nsDev/nsIno name the worker's namespace, so Detach can
	// tell whether it still exists without holding it alive meanwhile.
	nsPath       string
	nsDev, nsIno uint64
	// gone is set, under mu, once the pair is removed (or never made) and
	// the address released.
	gone bool
}

// Attachment is a worker's network as Attach made it.
type Attachment struct {
	ID string
	// IP is the worker's address on its eth0 (a /32).
	IP netip.Addr
	// Gateway is the host end of the pair and the worker's default route.
	Gateway netip.Addr
	// HostIf is the host end's name.
	HostIf string
	// Nameservers are those in ResolvConf; DNS to them is let through
	// even where the firewall would drop it (a nameserver on the host
	// itself or on a link-local address).
	Nameservers []netip.Addr
	// ResolvConf is the content of the worker's /etc/resolv.conf.
	ResolvConf []byte
}

// New installs the firewall, turns on IPv4 forwarding and deletes pairs a
// previous run left, in the network namespace of the calling thread (the
// host's). It needs CAP_NET_ADMIN there. The ruleset replaces any copy of
// it an earlier run left, so New is idempotent; Close, or Cleanup when
// there is no Manager, removes it. If New fails after installing the
// ruleset (deleting a stale pair, enabling forwarding), the ruleset stays:
// it only ever restricts worker interfaces, and a stale pair must not be
// left unfirewalled.
//
// net.ipv4.ip_forward is set to 1, as Docker and every CNI bridge setup do,
// and left on by Close: it is one switch for the whole host, and whatever
// else has come to rely on it since cannot be told apart. The ruleset stops
// workers' packets being forwarded anywhere they may not go; it does not
// stop the host routing other traffic, which a host meant not to route
// must drop in its own forward chain.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("network config: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	servers, resolv, err := workerDNS(cfg, os.ReadFile)
	if err != nil {
		return nil, err
	}
	hostNS, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("open the host network namespace: %w", err)
	}
	owner, err := own(hostNS, cfg.Table)
	if err != nil {
		hostNS.Close()
		return nil, err
	}
	h, err := netlink.NewHandleAt(hostNS, unix.NETLINK_ROUTE)
	if err != nil {
		owner.Close()
		hostNS.Close()
		return nil, fmt.Errorf("rtnetlink socket: %w", err)
	}
	m := &Manager{
		owner:       owner,
		cfg:         cfg,
		gateway:     cfg.gateway(),
		hostNS:      hostNS,
		nl:          h,
		nameservers: servers,
		resolv:      resolv,
		alloc:       newAllocator(cfg.Subnet),
		workers:     make(map[string]*attachment),
		ifNames:     make(map[string]string),
	}
	if err := m.start(ctx); err != nil {
		m.nl.Close()
		m.owner.Close()
		m.hostNS.Close()
		return nil, err
	}
	return m, nil
}

// ownersDir holds one lock file per table and network namespace.
const ownersDir = "/run/lock"

// own locks the table of the namespace ns for the calling Manager. New
// replaces the table and removes interfaces with its prefix as stale, so a
// second provider with the same settings would cut the first one's workers
// off; it is refused instead. The kernel drops the lock when its holder
// dies, so a provider that crashed leaves nothing to clean up by hand.
func own(ns netns.NsHandle, table string) (*os.File, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	if err := os.MkdirAll(ownersDir, 0o755); err != nil {
		return nil, fmt.Errorf("lock dir: %w", err)
	}
	path := filepath.Join(ownersDir, fmt.Sprintf("pronghorn-net-%d-%s.lock", st.Ino, table))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("nftables table %q and its interfaces belong to another running provider (%s): give each provider its own interface prefix and subnet: %w", table, path, ErrInUse)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

func (m *Manager) start(ctx context.Context) error {
	stale, err := m.staleLinks()
	if err != nil {
		return err
	}
	if m.cfg.MTU == 0 {
		m.cfg.MTU = defaultRouteMTU(m.nl)
	}
	// Rules first: from here on, a pair left by an earlier run is
	// firewalled until it is deleted below.
	if err := m.Refresh(ctx); err != nil {
		return err
	}
	for _, l := range stale {
		if err := m.nl.LinkDel(l); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete stale worker interface %s: %w", l.Attrs().Name, err)
		}
	}
	if len(stale) > 0 {
		m.cfg.Logger.Info("deleted worker interfaces of an earlier run", "count", len(stale))
	}
	// On a thread surely in hostNS: /proc/sys/net shows the namespace of
	// the thread that opens it.
	err = inNetNS(m.hostNS, m.hostNS, func() error {
		on, err := os.ReadFile(ipForward)
		if err != nil {
			return fmt.Errorf("read %s: %w", ipForward, err)
		}
		if string(bytes.TrimSpace(on)) == "1" {
			return nil
		}
		if err := writeSysctl(ipForward, "1", false); err != nil {
			return fmt.Errorf("enable IPv4 forwarding for worker egress: %w", err)
		}
		m.enabledForwarding = true
		return nil
	})
	if err != nil {
		return err
	}
	if m.enabledForwarding {
		m.cfg.Logger.Info("enabled IPv4 forwarding (net.ipv4.ip_forward=1) for worker egress")
	}
	return inNetNS(m.hostNS, m.hostNS, func() error {
		warnLegacyIptables(m.cfg)
		return nil
	})
}

// staleLinks lists the veths named like ours, left by an earlier run whose
// workers' namespaces still live (a dead namespace takes its pairs with
// it). Any other kind of interface with our prefix is a configuration
// error: the firewall would treat its traffic as a worker's.
func (m *Manager) staleLinks() ([]netlink.Link, error) {
	links, err := m.nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list host interfaces: %w", err)
	}
	var stale []netlink.Link
	for _, l := range links {
		if !strings.HasPrefix(l.Attrs().Name, m.cfg.HostIfPrefix) {
			if err := m.checkOverlap(l); err != nil {
				return nil, err
			}
			continue
		}
		if l.Type() != "veth" {
			return nil, fmt.Errorf("host interface %s (%s) starts with the worker prefix %q: the firewall would treat it as a worker's; choose another HostIfPrefix",
				l.Attrs().Name, l.Type(), m.cfg.HostIfPrefix)
		}
		stale = append(stale, l)
	}
	return stale, nil
}

// checkOverlap fails if l has an address in the workers' subnet: the
// host would route that address, or the whole subnet, two ways.
func (m *Manager) checkOverlap(l netlink.Link) error {
	addrs, err := m.nl.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		if p := netip.PrefixFrom(ip.Unmap(), ones); p.Overlaps(m.cfg.Subnet) {
			return fmt.Errorf("host address %s on %s overlaps the worker subnet %s; choose another Subnet", p, l.Attrs().Name, m.cfg.Subnet)
		}
	}
	return nil
}

// Refresh installs the ruleset again: atomically replaces our table and our
// rules in other tables' forward chains. New does it; call it again after
// something removed them, such as `nft flush ruleset`, a firewalld reload or
// an iptables-restore of the filter table (Docker's own rules are lost
// the same way).
func (m *Manager) Refresh(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.fwMu.Lock()
	defer m.fwMu.Unlock()
	if m.released {
		return ErrClosed
	}
	conn, err := m.nft()
	if err != nil {
		return err
	}
	if err := installRuleset(conn, m.spec()); err != nil {
		return err
	}
	touched, err := syncForeign(conn, m.cfg.Table, m.cfg.HostIfPrefix, !m.cfg.LeaveForeignChains)
	if err != nil {
		return err
	}
	m.foreign = touched
	if len(touched) > 0 {
		m.cfg.Logger.Info("accepting worker interfaces in other tables' forward chains; filtered in ours",
			"chains", touched, "table", "inet "+m.cfg.Table)
	}
	return nil
}

func (m *Manager) nft() (*nftables.Conn, error) {
	conn, err := nftables.New(nftables.WithNetNSFd(int(m.hostNS)))
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return conn, nil
}

// Attach connects the worker id, whose network namespace is at netnsPath,
// to the host: a veth pair with the host end in the host's namespace and
// the other end, eth0, in the worker's, an address, routes, and IPv6 off on
// eth0. netnsPath is the agent's namespace: /proc/<agent pid>/ns/net. Call
// it after the agent has started and before the function does, and write
// Attachment.ResolvConf as the worker's /etc/resolv.conf.
//
// It changes no firewall rule: the ruleset New installed covers every
// worker interface. On error, nothing of the attach is left behind.
func (m *Manager) Attach(ctx context.Context, id, netnsPath string) (Attachment, error) {
	if err := ctx.Err(); err != nil {
		return Attachment{}, err
	}
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return Attachment{}, fmt.Errorf("attach worker %s: open network namespace: %w", id, err)
	}
	defer ns.Close()
	if ns.Equal(m.hostNS) {
		return Attachment{}, fmt.Errorf("attach worker %s: %s is the host's network namespace, not a worker's", id, netnsPath)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		return Attachment{}, fmt.Errorf("attach worker %s: stat network namespace: %w", id, err)
	}
	a, err := m.reserve(id)
	if err != nil {
		return Attachment{}, fmt.Errorf("attach worker %s: %w", id, err)
	}
	defer a.mu.Unlock()
	a.nsPath, a.nsDev, a.nsIno = netnsPath, st.Dev, st.Ino
	if err := m.plumb(ctx, a, ns); err != nil {
		// The namespace is alive (ns holds it): delete the pair now.
		if rerr := m.release(a, m.deleteHostLink(a.hostIf)); rerr != nil {
			// The pair may still be there with the address on it: keep
			// the address reserved; Detach retries.
			return Attachment{}, fmt.Errorf("attach worker %s: %w", id, errors.Join(err, rerr))
		}
		return Attachment{}, fmt.Errorf("attach worker %s: %w", id, err)
	}
	return Attachment{
		ID:          id,
		IP:          a.ip,
		Gateway:     m.gateway,
		HostIf:      a.hostIf,
		Nameservers: slices.Clone(m.nameservers),
		ResolvConf:  bytes.Clone(m.resolv),
	}, nil
}

// reserve records id with a free address and its interface name, and
// returns its record locked.
func (m *Manager) reserve(id string) (*attachment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if _, ok := m.workers[id]; ok {
		return nil, ErrAttached
	}
	name := hostIfName(m.cfg.HostIfPrefix, id)
	if other, ok := m.ifNames[name]; ok {
		return nil, fmt.Errorf("host interface name %s is taken by worker %s", name, other)
	}
	ip, err := m.alloc.allocate(id)
	if err != nil {
		return nil, err
	}
	a := &attachment{id: id, hostIf: name, ip: ip}
	a.mu.Lock()
	m.workers[id] = a
	m.ifNames[name] = id
	return a, nil
}

// plumb makes a's pair. The peer is created straight in the worker's
// namespace under its final name, which saves moving and renaming it.
// MAC addresses derive from the worker's address and each side gets a
// permanent neighbour entry for the other, so no ARP is needed, and none
// depends on the host's arp_ignore settings.
func (m *Manager) plumb(ctx context.Context, a *attachment, ns netns.NsHandle) error {
	hostMAC, peerMAC := macs(a.ip)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = a.hostIf
	attrs.MTU = m.cfg.MTU
	attrs.HardwareAddr = hostMAC
	veth := &netlink.Veth{
		LinkAttrs:        attrs,
		PeerName:         WorkerIf,
		PeerHardwareAddr: peerMAC,
		PeerNamespace:    netlink.NsFd(int(ns)),
		PeerTxQLen:       -1,
	}
	if err := m.nl.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth pair %s/%s: %w", a.hostIf, WorkerIf, err)
	}
	// The host end needs no IPv6: no link-local address a worker could
	// reach the host at, no router solicitations into the worker. Done
	// over netlink rather than /proc/sys, which shows the namespace of
	// whichever thread opens it.
	if err := m.nl.LinkSetIP6AddrGenMode(veth, nl.IN6_ADDR_GEN_MODE_NONE); err != nil && !errors.Is(err, unix.EAFNOSUPPORT) {
		return fmt.Errorf("no IPv6 address on %s: %w", a.hostIf, err)
	}
	gw32 := ipNet(m.gateway)
	ip32 := ipNet(a.ip)
	if err := m.nl.AddrAdd(veth, &netlink.Addr{IPNet: gw32}); err != nil {
		return fmt.Errorf("address %s on %s: %w", gw32, a.hostIf, err)
	}
	if err := m.nl.LinkSetUp(veth); err != nil {
		return fmt.Errorf("set %s up: %w", a.hostIf, err)
	}
	if err := m.nl.NeighAdd(&netlink.Neigh{LinkIndex: veth.Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: ip32.IP, HardwareAddr: peerMAC}); err != nil {
		return fmt.Errorf("neighbour %s on %s: %w", a.ip, a.hostIf, err)
	}
	if err := m.nl.RouteAdd(&netlink.Route{LinkIndex: veth.Index, Dst: ip32, Scope: netlink.SCOPE_LINK, Src: gw32.IP}); err != nil {
		return fmt.Errorf("route to %s via %s: %w", a.ip, a.hostIf, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return inNetNS(ns, m.hostNS, func() error {
		return configureWorker(a.ip, m.gateway, hostMAC)
	})
}

// configureWorker sets up eth0 from inside the worker's namespace.
func configureWorker(ip, gw netip.Addr, gwMAC net.HardwareAddr) error {
	// Before eth0 is up, so it never gets an IPv6 address. Only eth0:
	// lo keeps ::1, so a function (or a snapshot of one) that listens
	// on ::1 or :: behaves as before.
	if err := writeSysctl("/proc/sys/net/ipv6/conf/"+WorkerIf+"/disable_ipv6", "1", true); err != nil {
		return fmt.Errorf("in worker: %w", err)
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("in worker: rtnetlink socket: %w", err)
	}
	defer h.Close()
	link, err := h.LinkByName(WorkerIf)
	if err != nil {
		return fmt.Errorf("in worker: find %s: %w", WorkerIf, err)
	}
	gw32 := ipNet(gw)
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipNet(ip)}); err != nil {
		return fmt.Errorf("in worker: address %s on %s: %w", ip, WorkerIf, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("in worker: set %s up: %w", WorkerIf, err)
	}
	if err := h.NeighAdd(&netlink.Neigh{LinkIndex: link.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: gw32.IP, HardwareAddr: gwMAC}); err != nil {
		return fmt.Errorf("in worker: neighbour %s: %w", gw, err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: gw32, Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("in worker: route to gateway %s: %w", gw, err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw32.IP}); err != nil {
		return fmt.Errorf("in worker: default route via %s: %w", gw, err)
	}
	return nil
}

// release forgets a and frees its address once its pair is gone, that is
// when removal succeeded (err is nil). Otherwise the record stays, so the
// address is not handed to another worker while this one may still hold
// it, and a later Detach retries. It needs a.mu.
func (m *Manager) release(a *attachment, err error) error {
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.alloc.release(a.ip, a.id)
	delete(m.workers, a.id)
	delete(m.ifNames, a.hostIf)
	a.gone = true
	return nil
}

// removePair makes sure a's pair is gone. When the worker's namespace has
// lost its last process, the kernel deletes the pair itself, batched with
// the rest of the namespace's teardown, some tens of ms later: removePair
// waits for that rather than delete it first. Deleting a veth takes the
// kernel ~15 ms holding the RTNL lock, which every other Attach and the
// kernel's own namespace teardowns then queue behind: with workers exiting
// while others start, deleting ourselves made Attach ~15 times slower
// (see BenchmarkChurn). A namespace still alive (a worker detached while
// running, or something holding it) has its pair deleted at once, and so
// has one the kernel has not cleared within Config.DetachGrace.
func (m *Manager) removePair(ctx context.Context, a *attachment) error {
	if nsAlive(a.nsPath, a.nsDev, a.nsIno) {
		return m.deleteHostLink(a.hostIf)
	}
	gone, err := m.waitLinkGone(ctx, a.hostIf)
	if err != nil || gone {
		return err
	}
	m.cfg.Logger.Warn("worker's pair outlived its namespace's processes; deleting it",
		"worker", a.id, "interface", a.hostIf, "waited", m.cfg.DetachGrace)
	return m.deleteHostLink(a.hostIf)
}

// waitLinkGone polls for the host end to disappear, for up to
// Config.DetachGrace. A poll is one rtnetlink request of some µs.
func (m *Manager) waitLinkGone(ctx context.Context, name string) (bool, error) {
	deadline := time.Now().Add(m.cfg.DetachGrace)
	tick := time.NewTicker(detachPoll)
	defer tick.Stop()
	for {
		_, err := m.nl.LinkByName(name)
		switch {
		case isNotFound(err):
			return true, nil
		case err != nil:
			return false, fmt.Errorf("find %s: %w", name, err)
		case time.Now().After(deadline):
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-tick.C:
		}
	}
}

// nsAlive reports whether the network namespace a worker was attached in
// still exists: its path still opens, to the same namespace (a reused pid
// would give another). Opening takes a reference only for the moment.
func nsAlive(path string, dev, ino uint64) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	return unix.Fstat(fd, &st) == nil && st.Dev == dev && st.Ino == ino
}

// deleteHostLink deletes a host end, which deletes its peer too. A missing
// one is no error: when a worker's namespace dies (its last process
// exits), the kernel deletes the pair.
func (m *Manager) deleteHostLink(name string) error {
	l, err := m.nl.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := m.nl.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// Detach makes sure the worker id's pair is gone and frees its address;
// when it returns, the address can go to another worker. Call it when the
// worker's agent has exited: the kernel then deletes the pair with the
// namespace, and Detach only waits for that (tens of ms, no work). A
// worker still running is cut off at once. Detaching an id that is not
// attached is not an error, so it can be called on every worker exit.
// If it fails (or ctx ends first), the address stays reserved and Detach
// can be called again.
func (m *Manager) Detach(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	a := m.workers[id]
	m.mu.Unlock()
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.gone {
		return nil
	}
	if err := m.release(a, m.removePair(ctx, a)); err != nil {
		return fmt.Errorf("detach worker %s: %w", id, err)
	}
	return nil
}

// Close detaches every worker still attached, then removes the ruleset;
// in this order, so no worker is ever connected without its firewall. If
// a worker cannot be detached the ruleset stays and Close fails. Close
// leaves IPv4 forwarding on (see New).
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	ids := make([]string, 0, len(m.workers))
	for id := range m.workers {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	var errs []error
	for _, id := range ids {
		if err := m.Detach(context.WithoutCancel(ctx), id); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("close: ruleset kept: %w", errors.Join(errs...))
	}
	m.fwMu.Lock()
	defer m.fwMu.Unlock()
	if m.released {
		return nil
	}
	conn, err := m.nft()
	if err == nil {
		err = removeRuleset(conn, m.cfg.Table)
	}
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	m.nl.Close()
	m.hostNS.Close()
	m.owner.Close()
	m.released = true
	return nil
}

// Cleanup removes what a Manager with cfg set up and did not remove, for
// when there is no Manager: the ruleset, its rules in other tables, and
// host ends of pairs named with cfg's prefix. It leaves IPv4 forwarding as
// it is. It works on the calling thread's network namespace.
func Cleanup(ctx context.Context, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return fmt.Errorf("network config: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("rtnetlink socket: %w", err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("list host interfaces: %w", err)
	}
	// Interfaces first, then the rules that firewall them.
	for _, l := range links {
		if l.Type() == "veth" && strings.HasPrefix(l.Attrs().Name, cfg.HostIfPrefix) {
			if err := h.LinkDel(l); err != nil && !isNotFound(err) {
				return fmt.Errorf("delete worker interface %s: %w", l.Attrs().Name, err)
			}
		}
	}
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	return removeRuleset(conn, cfg.Table)
}

// Gateway is the host end's address of every pair.
func (m *Manager) Gateway() netip.Addr { return m.gateway }

// Subnet is where workers' addresses come from.
func (m *Manager) Subnet() netip.Prefix { return m.cfg.Subnet }

// MTU is the pairs' MTU.
func (m *Manager) MTU() int { return m.cfg.MTU }

// Nameservers are the workers' nameservers.
func (m *Manager) Nameservers() []netip.Addr { return slices.Clone(m.nameservers) }

// ResolvConf is the content of every worker's /etc/resolv.conf.
func (m *Manager) ResolvConf() []byte { return bytes.Clone(m.resolv) }

// ForeignChains lists the other tables' forward chains the last install
// put accept rules into ("ip filter FORWARD").
func (m *Manager) ForeignChains() []string {
	m.fwMu.Lock()
	defer m.fwMu.Unlock()
	return slices.Clone(m.foreign)
}

// EnabledForwarding reports whether New turned net.ipv4.ip_forward on.
func (m *Manager) EnabledForwarding() bool { return m.enabledForwarding }

// Attached is how many workers are attached.
func (m *Manager) Attached() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.alloc.used()
}

// defaultRouteMTU is the MTU of the interface of the host's IPv4 default
// route, 1500 without one.
func defaultRouteMTU(h *netlink.Handle) int {
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return 1500
	}
	for _, r := range routes {
		isDefault := r.Dst == nil
		if r.Dst != nil {
			ones, _ := r.Dst.Mask.Size()
			isDefault = ones == 0
		}
		if !isDefault || r.LinkIndex == 0 {
			continue
		}
		if l, err := h.LinkByIndex(r.LinkIndex); err == nil && l.Attrs().MTU > 0 {
			return l.Attrs().MTU
		}
	}
	return 1500
}

// warnLegacyIptables warns when the legacy (x_tables) filter table is in
// use in the calling thread's namespace: its FORWARD chain is invisible to
// nftables, so a policy drop there cannot be handled here.
func warnLegacyIptables(cfg Config) {
	names, err := os.ReadFile("/proc/thread-self/net/ip_tables_names")
	if err != nil {
		return
	}
	for _, n := range strings.Fields(string(names)) {
		if n == "filter" {
			cfg.Logger.Warn("legacy iptables filter table in use: if its FORWARD policy is DROP, allow worker traffic there",
				"commands", fmt.Sprintf("iptables-legacy -I FORWARD -i %[1]s+ -j ACCEPT; iptables-legacy -I FORWARD -o %[1]s+ -j ACCEPT", cfg.HostIfPrefix))
			return
		}
	}
}

// macs derives the MAC addresses of a worker's pair from its address:
// locally administered, unicast, unique per live worker.
func macs(ip netip.Addr) (host, peer net.HardwareAddr) {
	b := ip.As4()
	return net.HardwareAddr{0x02, 'P', b[0], b[1], b[2], b[3]}, net.HardwareAddr{0x02, 'W', b[0], b[1], b[2], b[3]}
}

func ipNet(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT)
}
