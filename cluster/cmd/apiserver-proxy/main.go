// Command apiserver-proxy lets pods of the dev cluster reach the API server
// the way they do in any cluster: at the `kubernetes` Service's ClusterIP
// (the KUBERNETES_SERVICE_HOST and _PORT the kubelet gives every container,
// which rest.InClusterConfig uses). The dev cluster has no kube-proxy and its
// API server listens on loopback only, so cluster/up.sh puts the ClusterIP on
// the host's loopback interface, gives pods a route to it through the CNI
// bridge, and runs this: a plain TCP relay from that address to the API
// server. TLS stays end to end (the serving certificate names the ClusterIP).
//
//	apiserver-proxy -listen 10.96.0.1:443 -upstream 127.0.0.1:6443 -owner /var/lib/pronghorn-cluster
//
// -owner is not used: it names the cluster the process belongs to, so that
// cluster/env.sh's alive() recognises it by its command line.
package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	listen := flag.String("listen", "", "address to accept connections on (the kubernetes Service's ClusterIP:port)")
	upstream := flag.String("upstream", "", "the API server's address")
	_ = flag.String("owner", "", "the cluster's state directory (only identifies the process)")
	flag.Parse()
	if *listen == "" || *upstream == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	log.Printf("relaying %s to %s", l.Addr(), *upstream)
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// A transient accept error (out of file descriptors): back
			// off briefly instead of spinning.
			log.Printf("accept: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go relay(c, *upstream)
	}
}

// relay copies both ways until either side closes. A closed write half is
// passed on (CloseWrite), so a client's or server's orderly close of its
// sending side reaches the other end as it would without the relay.
func relay(c net.Conn, upstream string) {
	defer c.Close()
	u, err := net.DialTimeout("tcp", upstream, 5*time.Second)
	if err != nil {
		// The API server is down (restarting): the client sees its
		// connection closed, as it would see a refused one.
		log.Printf("dial %s for %s: %v", upstream, c.RemoteAddr(), err)
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		if _, err := io.Copy(dst, src); err != nil && !errors.Is(err, net.ErrClosed) {
			_ = dst.Close()
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(u, c)
	go pipe(c, u)
	<-done
	<-done
}
