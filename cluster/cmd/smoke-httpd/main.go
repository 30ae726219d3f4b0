// Command smoke-httpd is the one-file HTTP server that cluster/smoke.sh runs
// as a pod: it answers "pronghorn-smoke <hostname>" on $PORT (default 8080),
// so the host can prove it reaches a pod IP. The image has no shell, so
// `smoke-httpd -get URL` doubles as the client for a `kubectl exec` check,
// and `smoke-httpd -dial HOST:PORT` checks that a pod reaches an address.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	get := flag.String("get", "", "print the body of this URL and exit")
	dial := flag.String("dial", "", "open a TCP connection to this address, say so and exit")
	flag.Parse()
	if *dial != "" {
		c, err := net.DialTimeout("tcp", *dial, 5*time.Second)
		if err != nil {
			log.Fatal(err)
		}
		c.Close()
		fmt.Printf("connected to %s\n", *dial)
		return
	}
	if *get != "" {
		resp, err := http.Get(*get)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		io.Copy(os.Stdout, resp.Body) //nolint:errcheck
		return
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "pronghorn-smoke %s\n", host)
	})
	log.Printf("smoke-httpd: listening on :%s", port)
	log.Fatal(http.ListenAndServe(":"+port, nil))
}
