package network

import (
	"errors"
	"net/netip"
	"testing"
)

func TestAllocator(t *testing.T) {
	a := newAllocator(netip.MustParsePrefix("10.9.0.0/29")) // .2 to .6
	var got []netip.Addr
	for i := range 5 {
		ip, err := a.allocate(string(rune('a' + i)))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ip)
	}
	for i, ip := range got {
		if want := netip.AddrFrom4([4]byte{10, 9, 0, byte(2 + i)}); ip != want {
			t.Fatalf("allocation %d = %s, want %s", i, ip, want)
		}
	}
	if _, err := a.allocate("f"); !errors.Is(err, ErrExhausted) {
		t.Fatalf("full subnet: err %v", err)
	}
	// Releasing needs the owner: a stale release must not free a reused address.
	a.release(got[1], "zz")
	if a.used() != 5 {
		t.Fatal("release by a non-owner freed the address")
	}
	a.release(got[1], "b")
	a.release(got[3], "d")
	// Next-fit: the cursor wrapped to .2 after handing out .6, so the
	// freed .3 and .5 come next, in that order.
	ip, _ := a.allocate("g")
	if ip != got[1] {
		t.Fatalf("next allocation %s, want %s", ip, got[1])
	}
	ip, _ = a.allocate("h")
	if ip != got[3] {
		t.Fatalf("next allocation %s, want %s", ip, got[3])
	}
}

func TestAllocatorRoundRobin(t *testing.T) {
	a := newAllocator(netip.MustParsePrefix("10.9.0.0/24"))
	first, _ := a.allocate("a")
	a.release(first, "a")
	second, _ := a.allocate("b")
	if second == first {
		t.Fatalf("address %s reused at once; a released address should be the last to come back", first)
	}
}
