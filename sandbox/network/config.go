package network

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// Defaults of Config, and names the package fixes.
const (
	DefaultHostIfPrefix = "phv"
	DefaultTable        = "pronghorn"
	DefaultResolvConf   = "/etc/resolv.conf"
	DefaultDetachGrace  = 2 * time.Second
	// systemdResolvConf lists the upstream servers of systemd-resolved, whose
	// stub (127.0.0.53) a worker cannot reach; Docker falls back to it too.
	systemdResolvConf = "/run/systemd/resolve/resolv.conf"
	// WorkerIf is the name of a worker's interface inside its namespace.
	WorkerIf = "eth0"
	// maxIfName is IFNAMSIZ-1: the kernel's limit on interface names.
	maxIfName = 15
	// maxPrefix leaves at least 8 characters of a host interface's name to
	// tell workers apart.
	maxPrefix = maxIfName - 8
)

// DefaultSubnet is the subnet workers' addresses come from, for flags'
// defaults and documentation; Config.Subnet's zero value means it.
const DefaultSubnet = "10.62.0.0/16"

// defaultSubnet and linkLocal are parsed once and never written.
var defaultSubnet = netip.MustParsePrefix(DefaultSubnet)

// linkLocal is where cloud metadata services live (169.254.169.254), which
// hand out credentials of the host: workers must not reach it by default.
var linkLocal = netip.MustParsePrefix("169.254.0.0/16")

// ErrNoNameserver is returned by New when no nameserver a worker can reach
// was found; set Config.Nameservers.
var ErrNoNameserver = errors.New("no nameserver reachable from a worker")

// ErrClosed is returned by Attach after Close.
var ErrClosed = errors.New("network manager closed")

// ErrAttached is returned by Attach for an id that is attached already.
var ErrAttached = errors.New("worker already attached")

// ErrInUse is returned by New when another Manager, in this process or
// another, owns the same table in the same network namespace.
var ErrInUse = errors.New("network settings in use")

// ErrExhausted is returned by Attach when every address of the subnet is in use.
var ErrExhausted = errors.New("no free worker address in subnet")

// Config configures a Manager. The zero value is usable: every field has a
// default.
type Config struct {
	// Subnet is where worker addresses come from; its first address is
	// the gateway (the host side of every pair). IPv4, /8 to /30.
	// Default 10.62.0.0/16.
	Subnet netip.Prefix
	// HostIfPrefix starts the name of every host-side veth (the rest is the
	// worker id, or a hash of it). The firewall tells worker traffic by
	// this prefix, and New deletes veths whose name starts with it, so it
	// must belong to this provider alone on the host. 1 to 7 characters,
	// default "phv".
	HostIfPrefix string
	// Table names the nftables table (family inet) holding the ruleset,
	// and tags the rules put into other tables' forward chains. Default
	// "pronghorn". Two Managers on one host need different tables,
	// prefixes and subnets.
	Table string
	// ResolvConf is the file the host's nameservers are read from.
	// Default /etc/resolv.conf.
	ResolvConf string
	// Nameservers, when set, are the workers' nameservers instead of
	// those of ResolvConf (IPv4 only: workers have no IPv6).
	Nameservers []netip.Addr
	// MTU of the pairs. Default: the MTU of the interface of the host's
	// IPv4 default route (1500 without one), so a worker does not send
	// packets the uplink has to fragment or bounce.
	MTU int
	// AllowLinkLocal lets workers reach 169.254.0.0/16. Off by default:
	// cloud metadata services there hand out the host's credentials.
	// DNS to a nameserver there is allowed either way.
	AllowLinkLocal bool
	// DenyDestinations are more destinations workers may not reach, such
	// as the operator's LAN.
	DenyDestinations []netip.Prefix
	// LeaveForeignChains keeps New from inserting its two accept rules
	// at the top of other tables' forward base chains (iptables-nft's
	// FORWARD, firewalld's). Without them, a chain there with policy
	// drop (Docker sets one) drops every worker packet; with this set,
	// the operator must allow worker traffic there.
	LeaveForeignChains bool
	// DetachGrace is how long Detach waits for the kernel to delete the
	// pair of a worker whose namespace has no process left (it does so
	// some tens of ms after the last exits) before deleting it itself.
	// Default 2s.
	DetachGrace time.Duration
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

// withDefaults returns c with its defaults filled in, or why c is invalid.
func (c Config) withDefaults() (Config, error) {
	if !c.Subnet.IsValid() {
		c.Subnet = defaultSubnet
	}
	if c.HostIfPrefix == "" {
		c.HostIfPrefix = DefaultHostIfPrefix
	}
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.ResolvConf == "" {
		c.ResolvConf = DefaultResolvConf
	}
	if c.DetachGrace <= 0 {
		c.DetachGrace = DefaultDetachGrace
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if !c.Subnet.Addr().Is4() || c.Subnet.Bits() < 8 || c.Subnet.Bits() > 30 {
		return c, fmt.Errorf("subnet %s: want an IPv4 prefix from /8 to /30", c.Subnet)
	}
	if c.Subnet != c.Subnet.Masked() {
		return c, fmt.Errorf("subnet %s has host bits set (want %s)", c.Subnet, c.Subnet.Masked())
	}
	if len(c.HostIfPrefix) > maxPrefix || !validIfChars(c.HostIfPrefix) {
		return c, fmt.Errorf("host interface prefix %q: want 1 to %d letters, digits, '-' or '_'", c.HostIfPrefix, maxPrefix)
	}
	if c.MTU != 0 && (c.MTU < 576 || c.MTU > 65535) {
		return c, fmt.Errorf("mtu %d out of range 576..65535", c.MTU)
	}
	for _, p := range c.DenyDestinations {
		if !p.IsValid() || !p.Addr().Is4() {
			return c, fmt.Errorf("deny destination %s: want an IPv4 prefix", p)
		}
	}
	for _, a := range c.Nameservers {
		switch {
		case !a.Is4() && !a.Is4In6():
			return c, fmt.Errorf("nameserver %s: workers have IPv4 only", a)
		case a.Unmap().IsLoopback() || a.Unmap().IsUnspecified():
			return c, fmt.Errorf("nameserver %s: a worker's loopback is its own, not the host's", a)
		}
	}
	return c, nil
}

// gateway is the host side's address: the subnet's first.
func (c Config) gateway() netip.Addr {
	return c.Subnet.Addr().Next()
}

// denied lists the destinations the forward chain drops for workers: the
// rest of their own subnet (addresses not handed out would otherwise leave
// through the default route, unmasqueraded), link-local unless allowed,
// and the operator's.
func (c Config) denied() []netip.Prefix {
	out := []netip.Prefix{c.Subnet}
	if !c.AllowLinkLocal {
		out = append(out, linkLocal)
	}
	for _, p := range c.DenyDestinations {
		out = append(out, p.Masked())
	}
	return out
}

// hostIfName names the host side of a worker's pair: the prefix and the
// worker id when it fits and is a valid name (ids of the local backend
// are 10 hex digits, so "phv" + id is 13 characters and shows which
// worker it is), else the prefix and a hash of the id.
func hostIfName(prefix, id string) string {
	if len(prefix)+len(id) <= maxIfName && id != "" && validIfChars(id) {
		return prefix + id
	}
	sum := sha256.Sum256([]byte(id))
	return prefix + hex.EncodeToString(sum[:])[:maxIfName-len(prefix)]
}

// validIfChars reports whether s is non-empty and made of characters that
// are safe in an interface name (and in a shell or log line).
func validIfChars(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
		default:
			return false
		}
	}
	return true
}

// Validate reports what is wrong with c, as New would, without touching
// the host.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}
