package network

import (
	"errors"
	"io/fs"
	"net/netip"
	"strings"
	"testing"
)

func TestWorkerDNS(t *testing.T) {
	files := map[string]string{
		"/etc/resolv.conf":                 "# comment\nsearch example.org\nnameserver 10.255.255.53\nnameserver ::1\noptions edns0 trust-ad\n",
		"/stub/resolv.conf":                "nameserver 127.0.0.53\noptions edns0\nsearch lan\n",
		"/run/systemd/resolve/resolv.conf": "nameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch lan\n",
		"/v6/resolv.conf":                  "nameserver 2001:db8::53\n",
		"/many/resolv.conf":                "nameserver 192.0.2.1\nnameserver 192.0.2.2\nnameserver 192.0.2.3\nnameserver 192.0.2.4\n",
		"/empty/resolv.conf":               "",
	}
	// stubFS is a host whose /etc/resolv.conf is systemd-resolved's stub.
	stubFS := func(name string) ([]byte, error) {
		if name == "/etc/resolv.conf" {
			name = "/stub/resolv.conf"
		}
		return read(files)(name)
	}
	for _, tc := range []struct {
		name    string
		cfg     Config
		read    func(string) ([]byte, error)
		servers string
		content []string
		err     string
	}{
		{name: "host nameserver", cfg: Config{ResolvConf: "/etc/resolv.conf"}, read: read(files),
			servers: "[10.255.255.53]", content: []string{"search example.org\nnameserver 10.255.255.53\noptions edns0 trust-ad\n"}},
		{name: "loopback stub falls back to systemd's upstream list", cfg: Config{ResolvConf: "/etc/resolv.conf"}, read: stubFS,
			servers: "[192.0.2.53]", content: []string{"from /run/systemd/resolve/resolv.conf", "search lan\nnameserver 192.0.2.53\n"}},
		{name: "loopback stub without fallback", cfg: Config{ResolvConf: "/stub/resolv.conf"}, read: read(files),
			err: "[127.0.0.53] are loopback addresses"},
		{name: "ipv6 only", cfg: Config{ResolvConf: "/v6/resolv.conf"}, read: read(files),
			err: "IPv6, which workers do not have"},
		{name: "empty", cfg: Config{ResolvConf: "/empty/resolv.conf"}, read: read(files),
			err: "lists no nameserver"},
		{name: "missing file", cfg: Config{ResolvConf: "/nope"}, read: read(files),
			err: "read /nope"},
		{name: "three at most", cfg: Config{ResolvConf: "/many/resolv.conf"}, read: read(files),
			servers: "[192.0.2.1 192.0.2.2 192.0.2.3]"},
		{name: "configured nameservers win, search and options stay", cfg: Config{ResolvConf: "/stub/resolv.conf",
			Nameservers: []netip.Addr{netip.MustParseAddr("::ffff:198.51.100.1")}}, read: read(files),
			servers: "[198.51.100.1]", content: []string{"search lan\nnameserver 198.51.100.1\noptions edns0\n"}},
		{name: "configured nameservers, no file", cfg: Config{ResolvConf: "/nope",
			Nameservers: []netip.Addr{netip.MustParseAddr("198.51.100.1")}}, read: read(files),
			servers: "[198.51.100.1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			servers, content, err := workerDNS(tc.cfg, tc.read)
			if tc.err != "" {
				if !errors.Is(err, ErrNoNameserver) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want ErrNoNameserver saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fmtAddrs(servers); got != tc.servers {
				t.Errorf("servers %s, want %s", got, tc.servers)
			}
			for _, want := range tc.content {
				if !strings.Contains(string(content), want) {
					t.Errorf("resolv.conf\n%s\nlacks %q", content, want)
				}
			}
		})
	}
}

func read(files map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		s, ok := files[name]
		if !ok {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		return []byte(s), nil
	}
}

func fmtAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}
