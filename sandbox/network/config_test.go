package network

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
)

func TestConfigDefaults(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Subnet != defaultSubnet || c.HostIfPrefix != "phv" || c.Table != "pronghorn" || c.ResolvConf != "/etc/resolv.conf" || c.Logger == nil {
		t.Fatalf("defaults: %+v", c)
	}
	if gw := c.gateway(); gw != netip.MustParseAddr("10.62.0.1") {
		t.Fatalf("gateway %s", gw)
	}
	want := []netip.Prefix{defaultSubnet, netip.MustParsePrefix("169.254.0.0/16")}
	if got := c.denied(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("denied %v, want %v", got, want)
	}
	c.AllowLinkLocal = true
	c.DenyDestinations = []netip.Prefix{netip.MustParsePrefix("192.168.1.7/16")}
	if got := c.denied(); len(got) != 2 || got[1] != netip.MustParsePrefix("192.168.0.0/16") {
		t.Fatalf("denied %v", got)
	}
}

func TestConfigInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"ipv6 subnet", Config{Subnet: netip.MustParsePrefix("fd00::/64")}, "IPv4"},
		{"subnet too small", Config{Subnet: netip.MustParsePrefix("10.0.0.0/31")}, "/30"},
		{"host bits", Config{Subnet: netip.MustParsePrefix("10.62.0.1/16")}, "host bits"},
		{"long prefix", Config{HostIfPrefix: "pronghorn"}, "prefix"},
		{"bad prefix", Config{HostIfPrefix: "ph v"}, "prefix"},
		{"mtu", Config{MTU: 100}, "mtu"},
		{"ipv6 deny", Config{DenyDestinations: []netip.Prefix{netip.MustParsePrefix("fd00::/8")}}, "deny"},
		{"ipv6 nameserver", Config{Nameservers: []netip.Addr{netip.MustParseAddr("fd00::1")}}, "IPv4 only"},
		{"loopback nameserver", Config{Nameservers: []netip.Addr{netip.MustParseAddr("127.0.0.53")}}, "loopback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.cfg.withDefaults()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one about %q", err, tc.want)
			}
		})
	}
}

func TestHostIfName(t *testing.T) {
	for _, tc := range []struct {
		prefix, id, want string
	}{
		{"phv", "0a1b2c3d4e", "phv0a1b2c3d4e"},                    // the local backend's ids
		{"phv", "abcdefghijkl", "phvabcdefghijkl"},                // exactly 15
		{"phv", "abcdefghijklm", "phv" + hash12("abcdefghijklm")}, // too long
		{"phv", "a/b", "phv" + hash12("a/b")},                     // not a valid name
		{"phv", "", "phv" + hash12("")},
		{"px", "x.y", "px" + hash("x.y")[:13]},
	} {
		got := hostIfName(tc.prefix, tc.id)
		if got != tc.want {
			t.Errorf("hostIfName(%q, %q) = %q, want %q", tc.prefix, tc.id, got, tc.want)
		}
		if len(got) > maxIfName {
			t.Errorf("%q is longer than %d", got, maxIfName)
		}
	}
}

func hash12(s string) string { return hash(s)[:12] }

// hash is the derivation hostIfName uses for ids that cannot be names.
func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
