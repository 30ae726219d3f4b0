package network

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// allocator hands out worker addresses of a subnet: everything but the
// network address, the gateway (the first host address) and the broadcast
// address. It is not safe for concurrent use; the Manager locks around it.
//
// It allocates next-fit, round robin from the last address handed out, so
// an address just released is the last to be reused: conntrack entries and
// peers' caches about the previous holder have time to expire (the CNI
// host-local IPAM does the same).
type allocator struct {
	base  uint32 // the network address
	first uint32 // offset of the first worker address
	last  uint32 // offset of the last worker address
	next  uint32 // offset to try first
	inUse map[uint32]string
}

func newAllocator(subnet netip.Prefix) *allocator {
	size := uint32(1) << (32 - subnet.Bits())
	return &allocator{
		base:  be32(subnet.Addr()),
		first: 2,
		last:  size - 2,
		next:  2,
		inUse: make(map[uint32]string),
	}
}

// allocate reserves a free address for owner.
func (a *allocator) allocate(owner string) (netip.Addr, error) {
	n := a.last - a.first + 1
	for i := uint32(0); i < n; i++ {
		off := a.next
		a.next++
		if a.next > a.last {
			a.next = a.first
		}
		if _, taken := a.inUse[off]; !taken {
			a.inUse[off] = owner
			return a.addr(off), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%w: all %d in use", ErrExhausted, n)
}

// release frees ip if owner holds it.
func (a *allocator) release(ip netip.Addr, owner string) {
	off := be32(ip) - a.base
	if a.inUse[off] == owner {
		delete(a.inUse, off)
	}
}

func (a *allocator) used() int { return len(a.inUse) }

func (a *allocator) addr(off uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], a.base+off)
	return netip.AddrFrom4(b)
}

func be32(ip netip.Addr) uint32 {
	b := ip.As4()
	return binary.BigEndian.Uint32(b[:])
}
