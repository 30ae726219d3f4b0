// Package network gives a local worker's network namespace egress through
// the host, behind a firewall: a function can open TCP and UDP connections
// to the outside world and resolve names, and cannot reach the host itself
// (the provider's API port, the host's services), other workers, or cloud
// metadata services.
//
// It does with netlink and nftables, from Go, what the CNI ptp and
// firewall plugins do for a container, without running a plugin or an
// iptables binary per worker: Attach costs about 1 ms.
//
// # Use
//
//	m, err := network.New(ctx, network.Config{})   // once, at provider start
//	...
//	// after the agent started (its pid namespace is new, its network
//	// namespace is that of the agent process), before the function starts
//	// or is restored:
//	att, err := m.Attach(ctx, workerID, fmt.Sprintf("/proc/%d/ns/net", agentPID))
//	// write att.ResolvConf as the worker's /etc/resolv.conf
//	...
//	// when the agent has exited:
//	err = m.Detach(ctx, workerID)
//	...
//	err = m.Close(ctx)                              // at provider stop
//
// New, Attach and Detach need CAP_NET_ADMIN in the host's network
// namespace, which is the namespace of the thread calling New.
//
// # Topology
//
// Each worker gets a veth pair, point to point as with the CNI ptp plugin
// (no bridge, so workers share no L2 segment):
//
//	host namespace                         worker namespace
//	phv<id>  10.62.0.1/32                  eth0  10.62.x.y/32
//	route 10.62.x.y/32 dev phv<id>         route 10.62.0.1/32 dev eth0 scope link
//	                                       default via 10.62.0.1 dev eth0
//
// Every host end has the same gateway address, the subnet's first. MAC
// addresses derive from the worker's address and both sides get a
// permanent neighbour entry, so no ARP is needed. IPv6 is off on both
// ends (eth0's disable_ipv6; no address generation on the host end); the
// worker's loopback keeps ::1, so a function listening there behaves as
// before. Worker addresses come from an in-memory allocator, round robin,
// so an address just released is the last to be reused; it starts afresh
// with each New, which deletes the pairs an earlier run left.
//
// The MTU of the pairs is that of the host's default-route interface.
//
// # Firewall
//
// New installs one static ruleset, its own table "inet pronghorn",
// replaced atomically at every New (and by Refresh) and deleted by Close
// or Cleanup. It tells worker traffic by interface name ("phv*"), never by
// worker, so Attach and Detach change no rule. In nft syntax (nameserver
// rules appear once per nameserver, 10.99.0.1 here):
//
//	table inet pronghorn {
//	  chain prerouting {
//	    type filter hook prerouting priority mangle; policy accept;
//	    iifname "phv*" meta nfproto != ipv4 counter drop
//	    iifname "phv*" fib saddr . iif oif missing counter drop
//	    iifname "phv*" ip daddr 10.99.0.1 udp dport 53 accept
//	    iifname "phv*" ip daddr 10.99.0.1 tcp dport 53 accept
//	    iifname "phv*" ct state new fib daddr type local counter drop
//	  }
//	  chain input {
//	    type filter hook input priority filter; policy accept;
//	    iifname "phv*" ct state established,related accept
//	    iifname "phv*" ip daddr 10.99.0.1 udp dport 53 accept
//	    iifname "phv*" ip daddr 10.99.0.1 tcp dport 53 accept
//	    iifname "phv*" counter drop
//	  }
//	  chain forward {
//	    type filter hook forward priority filter; policy accept;
//	    iifname "phv*" oifname "phv*" counter drop
//	    oifname "phv*" ct state established,related accept
//	    oifname "phv*" counter drop
//	    iifname "phv*" ip daddr 10.99.0.1 udp dport 53 accept
//	    iifname "phv*" ip daddr 10.99.0.1 tcp dport 53 accept
//	    iifname "phv*" ip daddr 10.62.0.0/16 counter drop
//	    iifname "phv*" ip daddr 169.254.0.0/16 counter drop
//	    iifname "phv*" accept
//	  }
//	  chain postrouting {
//	    type nat hook postrouting priority srcnat; policy accept;
//	    ip saddr 10.62.0.0/16 oifname != "phv*" masquerade
//	  }
//	}
//
// In words: workers speak IPv4 only; a worker can send only from its own
// address (strict reverse-path check, so it cannot pose as another worker
// or as the host); no new connection from a worker reaches any address of
// the host, checked before destination NAT so a port the host publishes by
// DNAT (Docker's -p) counts as the host too; DNS to the workers'
// nameservers is the one exception, when a nameserver is the host itself
// or link-local; workers cannot reach each other, the rest of their
// subnet, 169.254.0.0/16 (unless Config.AllowLinkLocal) or
// Config.DenyDestinations; nothing outside can open a connection to a
// worker; what leaves through any other interface is masqueraded to the
// host's address. The host itself can still connect to a worker (the
// provider talks to agents over unix sockets anyway).
//
// # Living with other firewalls
//
// nftables runs every base chain on a hook, and a packet survives only if
// each one accepts it: an accept ends one chain, a drop is final. So our
// drops hold whatever other tables say, but another table's forward chain
// can drop what ours lets through. Docker sets iptables' FORWARD policy to
// DROP; firewalld rejects forwarding it was not told about. For that, New
// inserts two rules at the top of every other ip or inet table's forward
// base chain, as Docker and the CNI firewall plugin add theirs to FORWARD:
//
//	iifname "phv*" counter accept comment "pronghorn workers: filtered in table inet pronghorn"
//	oifname "phv*" counter accept comment "pronghorn workers: filtered in table inet pronghorn"
//
// They accept only what our chain already let through. iptables-nft lists
// them as its own: -A FORWARD -i phv+ -m comment --comment "..." -j ACCEPT.
// New replaces them, Close and Cleanup remove them (found by the comment),
// Config.LeaveForeignChains turns this off. A reload of the other firewall
// (firewalld, iptables-restore, nft -f) removes them, as it removes
// Docker's: call Refresh then. The legacy (x_tables) iptables is invisible
// to nftables: New logs a warning if its filter table is in use, with the
// two iptables-legacy commands to run if its FORWARD policy is DROP.
//
// # IP forwarding
//
// New sets net.ipv4.ip_forward=1, as Docker does, and nothing turns it off
// again: it is one switch for the whole host, and whatever else has come
// to rely on it cannot be told apart. The ruleset limits what workers'
// packets may be forwarded to; it does not stop the host forwarding other
// traffic, which a host that must not route has to drop in its own
// firewall (as Docker does with its FORWARD policy).
//
// # DNS
//
// Attachment.ResolvConf carries the host's nameservers (the first three
// IPv4 ones; IPv6 ones are dropped, workers have no IPv6) with its search
// and options lines. A loopback nameserver, such as systemd-resolved's
// 127.0.0.53 or a local dnsmasq, is the host's own and unreachable from a
// worker's namespace. For /etc/resolv.conf, New then reads the upstream
// servers from /run/systemd/resolve/resolv.conf, as Docker does; failing
// that, New fails with ErrNoNameserver, whose message says which
// nameservers were unusable and that Config.Nameservers can name others.
//
// # Detach and the cost of deleting a veth
//
// Deleting a veth pair takes the kernel about 15 ms under the RTNL lock,
// which every Attach, and the kernel's own teardown of dying namespaces,
// then wait for. When a worker's namespace has no process left, the kernel
// deletes the pair itself, batched with the namespace's teardown, some
// tens of ms later, so Detach of an exited worker only waits for that and
// frees the address (Config.DetachGrace bounds the wait before it deletes
// the pair itself). With workers exiting while others start, this keeps
// Attach at ~2 ms; deleting the pair in Detach made it ~30 ms. Detach of a
// worker still running deletes the pair at once.
//
// # Snapshots
//
// A restored worker gets a new namespace and, from Attach, a new address.
// Listening and loopback sockets are unaffected. Established connections
// to the outside cannot survive (the host's connection tracking and the
// remote peer know them by the old address): restore them closed with
// CRIU's tcp-close, and the function sees a reset and reconnects. A socket bound to the old
// worker address itself (an explicit bind, or a connected UDP socket)
// cannot be recreated by CRIU in the new namespace, whose address differs;
// the agent's fallback to a cold start covers such a snapshot.
package network
