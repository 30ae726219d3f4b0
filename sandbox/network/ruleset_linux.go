package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// The ruleset is static: it names worker traffic by the host interface it
// comes in or goes out on ("phv*"), never by worker, so Attach and Detach
// touch no rule and cost nothing in nftables. See doc.go for the rules in
// nft syntax.

// rulesetSpec is what the ruleset depends on.
type rulesetSpec struct {
	table       string
	prefix      string
	subnet      netip.Prefix
	denied      []netip.Prefix
	nameservers []netip.Addr
}

func (m *Manager) spec() rulesetSpec {
	return rulesetSpec{
		table:       m.cfg.Table,
		prefix:      m.cfg.HostIfPrefix,
		subnet:      m.cfg.Subnet,
		denied:      m.cfg.denied(),
		nameservers: m.nameservers,
	}
}

func ourTable(name string) *nftables.Table {
	return &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
}

// foreignComment tags the rules New puts into other tables, so they can be
// found and removed again, and tells whoever lists them who put them there.
func foreignComment(table string) string {
	return "pronghorn workers: filtered in table inet " + table
}

// installRuleset replaces our table with a fresh copy of the ruleset, in a
// single transaction: there is no moment without rules, and whatever an
// earlier run left behind is gone.
func installRuleset(conn *nftables.Conn, s rulesetSpec) error {
	t := ourTable(s.table)
	// Adding an existing table is a no-op, so this deletes one whether or
	// not it was there, without failing the transaction.
	conn.AddTable(t)
	conn.DelTable(t)
	conn.AddTable(t)

	chain := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		return conn.AddChain(&nftables.Chain{Name: name, Table: t, Type: typ, Hooknum: hook, Priority: prio})
	}
	add := func(c *nftables.Chain, comment string, exprs ...[]expr.Any) {
		conn.AddRule(&nftables.Rule{Table: t, Chain: c, Exprs: slices.Concat(exprs...),
			UserData: userdata.AppendString(nil, userdata.TypeComment, comment)})
	}
	in, out := ifPrefix(expr.MetaKeyIIFNAME, s.prefix, expr.CmpOpEq), ifPrefix(expr.MetaKeyOIFNAME, s.prefix, expr.CmpOpEq)
	dns := func(c *nftables.Chain) {
		for _, ns := range s.nameservers {
			for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
				add(c, "dns to the workers' nameserver", in, ipv4(), daddrIn(netip.PrefixFrom(ns, 32)), l4proto(proto), dport(53), verdict(expr.VerdictAccept))
			}
		}
	}

	// Mangle priority: after conntrack (-200), so ct state is known, and
	// before destination NAT (-100), so a connection to a port the host
	// publishes by DNAT (Docker's -p) is seen as one to the host.
	pre := chain("prerouting", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, nftables.ChainPriorityMangle)
	add(pre, "workers have IPv4 only", in, notIPv4(), counter(), verdict(expr.VerdictDrop))
	add(pre, "anti-spoofing: the source must route back through the same veth", in, fibRPFMissing(), counter(), verdict(expr.VerdictDrop))
	dns(pre)
	add(pre, "no new connection from a worker to the host", in, ctState(expr.CtStateBitNEW), fibDaddrLocal(), counter(), verdict(expr.VerdictDrop))

	input := chain("input", nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter)
	add(input, "replies to the host's own connections to workers", in, ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))
	dns(input)
	add(input, "nothing else from a worker reaches the host", in, counter(), verdict(expr.VerdictDrop))

	fwd := chain("forward", nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter)
	add(fwd, "no worker reaches another", in, out, counter(), verdict(expr.VerdictDrop))
	add(fwd, "replies to workers' connections", out, ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))
	add(fwd, "nothing outside opens a connection to a worker", out, counter(), verdict(expr.VerdictDrop))
	dns(fwd)
	for _, p := range s.denied {
		add(fwd, "denied destination "+p.String(), in, ipv4(), daddrIn(p), counter(), verdict(expr.VerdictDrop))
	}
	add(fwd, "egress", in, verdict(expr.VerdictAccept))

	post := chain("postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
	add(post, "workers leave with the host's address", ipv4(), saddrIn(s.subnet), ifPrefix(expr.MetaKeyOIFNAME, s.prefix, expr.CmpOpNeq), []expr.Any{&expr.Masq{}})

	if err := conn.Flush(); err != nil {
		return fmt.Errorf("install nftables table inet %s: %w", s.table, err)
	}
	return nil
}

// foreignForwardChains lists the base chains on the forward hook of every
// other IPv4-capable table. A packet is forwarded only if each of them
// accepts it (an accept ends one base chain, not the hook), so a policy
// drop there, as Docker sets on iptables' FORWARD, would drop workers'
// traffic however our table decides.
func foreignForwardChains(conn *nftables.Conn, table string) ([]*nftables.Chain, error) {
	chains, err := conn.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	var out []*nftables.Chain
	for _, c := range chains {
		if c.Hooknum == nil || *c.Hooknum != *nftables.ChainHookForward || c.Type != nftables.ChainTypeFilter {
			continue
		}
		if c.Table.Family != nftables.TableFamilyIPv4 && c.Table.Family != nftables.TableFamilyINet {
			continue
		}
		if c.Table.Family == nftables.TableFamilyINet && c.Table.Name == table {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

// syncForeign removes the rules an earlier run tagged in other tables'
// forward chains and, if insert, puts two fresh ones at the top of each:
// accept what comes from or goes to a worker interface. Our own forward
// chain has already dropped what workers may not do (a drop is final in
// every chain), so these accept only what ours let through. The rules are
// what `iptables -I FORWARD -i phv+ -j ACCEPT` makes, so iptables-nft
// lists them as its own. It returns the chains it touched.
func syncForeign(conn *nftables.Conn, table, prefix string, insert bool) ([]string, error) {
	chains, err := foreignForwardChains(conn, table)
	if err != nil {
		return nil, err
	}
	tag := foreignComment(table)
	var touched []string
	for _, c := range chains {
		rules, err := conn.GetRules(c.Table, c)
		if err != nil {
			return nil, fmt.Errorf("list rules of %s: %w", chainName(c), err)
		}
		for _, r := range rules {
			if s, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok && s == tag {
				if err := conn.DelRule(r); err != nil {
					return nil, fmt.Errorf("remove our rule from %s: %w", chainName(c), err)
				}
			}
		}
		if !insert {
			continue
		}
		for _, key := range []expr.MetaKey{expr.MetaKeyOIFNAME, expr.MetaKeyIIFNAME} {
			conn.InsertRule(&nftables.Rule{Table: c.Table, Chain: c,
				Exprs:    slices.Concat(ifPrefix(key, prefix, expr.CmpOpEq), counter(), verdict(expr.VerdictAccept)),
				UserData: userdata.AppendString(nil, userdata.TypeComment, tag)})
		}
		touched = append(touched, chainName(c))
	}
	if err := conn.Flush(); err != nil {
		return nil, fmt.Errorf("update other tables' forward chains %v: %w", touched, err)
	}
	return touched, nil
}

// removeRuleset deletes our table and our rules in other tables.
func removeRuleset(conn *nftables.Conn, table string) error {
	_, ferr := syncForeign(conn, table, "", false)
	t := ourTable(table)
	conn.AddTable(t) // so the delete cannot fail on a missing table
	conn.DelTable(t)
	if err := conn.Flush(); err != nil {
		return errors.Join(ferr, fmt.Errorf("delete nftables table inet %s: %w", table, err))
	}
	return ferr
}

func chainName(c *nftables.Chain) string {
	fam := "inet"
	if c.Table.Family == nftables.TableFamilyIPv4 {
		fam = "ip"
	}
	return fam + " " + c.Table.Name + " " + c.Name
}

// Expression builders. Each returns the expressions of one match, in the
// register layout nft itself emits, so `nft list` shows them as nft
// syntax.

// ifPrefix matches an interface name starting with prefix: comparing only
// the prefix's bytes of the name is how nft's "phv*" (and iptables' "phv+")
// is encoded.
func ifPrefix(key expr.MetaKey, prefix string, op expr.CmpOp) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: []byte(prefix)},
	}
}

func nfproto(op expr.CmpOp) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

// ipv4 guards an IPv4 header match in our inet table: on an IPv6 packet
// the same offsets hold other fields.
func ipv4() []expr.Any    { return nfproto(expr.CmpOpEq) }
func notIPv4() []expr.Any { return nfproto(expr.CmpOpNeq) }

func saddrIn(p netip.Prefix) []expr.Any { return addrIn(12, p) }
func daddrIn(p netip.Prefix) []expr.Any { return addrIn(16, p) }

// addrIn matches the IPv4 address at offset of the network header against
// p: whole bytes compare directly, other lengths are masked first.
func addrIn(offset uint32, p netip.Prefix) []expr.Any {
	p = p.Masked()
	a := p.Addr().As4()
	bits := p.Bits()
	if bits == 0 {
		return nil
	}
	if bits%8 == 0 {
		n := uint32(bits / 8)
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: n},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:n]},
		}
	}
	mask := make([]byte, 4)
	binary.BigEndian.PutUint32(mask, ^uint32(0)<<(32-bits))
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
	}
}

func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// fibRPFMissing is nft's "fib saddr . iif oif missing": no route back to
// the source through the interface the packet came in on. It is strict
// reverse-path filtering, so a worker cannot send with another worker's
// address or any address but its own.
func fibRPFMissing() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagSADDR: true, FlagIIF: true, ResultOIF: true, FlagPRESENT: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: make([]byte, 4)},
	}
}

// fibDaddrLocal is nft's "fib daddr type local": the destination is one of
// the host's own addresses, on any interface.
func fibDaddrLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

// dport matches the destination port of TCP or UDP ("th dport").
func dport(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

func counter() []expr.Any { return []expr.Any{&expr.Counter{}} }

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }
