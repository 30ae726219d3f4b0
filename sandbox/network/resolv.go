package network

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"strings"
)

// maxNameservers is glibc's MAXNS: resolvers ignore any after the third.
const maxNameservers = 3

// resolvFile is what a resolv.conf says.
type resolvFile struct {
	nameservers []netip.Addr
	other       []string // search, domain and options lines, verbatim
}

func parseResolvConf(data []byte) resolvFile {
	var rf resolvFile
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		fields := strings.Fields(line)
		switch fields[0] {
		case "nameserver":
			if len(fields) < 2 {
				continue
			}
			// An IPv6 nameserver may carry a zone (fe80::1%eth0).
			if a, err := netip.ParseAddr(fields[1]); err == nil {
				rf.nameservers = append(rf.nameservers, a.Unmap())
			}
		case "search", "domain", "options":
			rf.other = append(rf.other, strings.Join(fields, " "))
		}
	}
	return rf
}

// usable keeps the nameservers a worker can reach: IPv4 (workers have no
// IPv6) and not loopback (the host's loopback is not the worker's).
func usable(servers []netip.Addr) (ok, loopback, ipv6 []netip.Addr) {
	for _, a := range servers {
		switch {
		case a.Is4() && a.IsLoopback():
			loopback = append(loopback, a)
		case !a.Is4():
			if a.IsLoopback() {
				loopback = append(loopback, a)
			} else {
				ipv6 = append(ipv6, a)
			}
		case a.IsUnspecified():
			// 0.0.0.0 means "this host" to glibc: loopback in effect.
			loopback = append(loopback, a)
		default:
			ok = append(ok, a)
		}
	}
	return ok, loopback, ipv6
}

// workerDNS decides the workers' nameservers and renders their
// resolv.conf. Config.Nameservers win; else the host's, from
// cfg.ResolvConf. A host whose resolver is a loopback stub (systemd-resolved
// at 127.0.0.53, a local dnsmasq at 127.0.0.1) cannot lend it to a worker,
// whose loopback is its own: for /etc/resolv.conf the stub's upstream list
// at /run/systemd/resolve/resolv.conf is tried, as Docker does, and failing
// that New fails with ErrNoNameserver rather than hand workers a resolver
// that cannot answer.
func workerDNS(cfg Config, readFile func(string) ([]byte, error)) ([]netip.Addr, []byte, error) {
	if len(cfg.Nameservers) > 0 {
		var rf resolvFile
		if data, err := readFile(cfg.ResolvConf); err == nil {
			rf = parseResolvConf(data) // search and options still apply
		}
		servers := make([]netip.Addr, 0, len(cfg.Nameservers))
		for _, a := range cfg.Nameservers {
			servers = append(servers, a.Unmap())
		}
		return renderResolv("Config.Nameservers", servers, rf.other)
	}
	data, err := readFile(cfg.ResolvConf)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: read %s: %w (set Config.Nameservers)", ErrNoNameserver, cfg.ResolvConf, err)
	}
	rf := parseResolvConf(data)
	ok, loopback, ipv6 := usable(rf.nameservers)
	if len(ok) > 0 {
		return renderResolv(cfg.ResolvConf, ok, rf.other)
	}
	if len(loopback) > 0 && cfg.ResolvConf == DefaultResolvConf {
		if data, err := readFile(systemdResolvConf); err == nil {
			up := parseResolvConf(data)
			if upOK, _, _ := usable(up.nameservers); len(upOK) > 0 {
				return renderResolv(systemdResolvConf, upOK, up.other)
			}
		}
	}
	var why []string
	if len(loopback) > 0 {
		why = append(why, fmt.Sprintf("%v are loopback addresses, the host's own and unreachable from a worker's network namespace", loopback))
	}
	if len(ipv6) > 0 {
		why = append(why, fmt.Sprintf("%v are IPv6, which workers do not have", ipv6))
	}
	if len(why) == 0 {
		why = append(why, "it lists no nameserver")
	}
	return nil, nil, fmt.Errorf("%w: %s: %s; set Config.Nameservers", ErrNoNameserver, cfg.ResolvConf, strings.Join(why, "; "))
}

func renderResolv(source string, servers []netip.Addr, other []string) ([]netip.Addr, []byte, error) {
	if len(servers) > maxNameservers {
		servers = servers[:maxNameservers]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by pronghorn for a sandboxed worker, from %s.\n", source)
	for _, l := range other {
		if !strings.HasPrefix(l, "options") {
			b.WriteString(l + "\n")
		}
	}
	for _, a := range servers {
		b.WriteString("nameserver " + a.String() + "\n")
	}
	for _, l := range other {
		if strings.HasPrefix(l, "options") {
			b.WriteString(l + "\n")
		}
	}
	return servers, []byte(b.String()), nil
}
