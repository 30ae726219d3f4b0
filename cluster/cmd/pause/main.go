// Command pause is the pod sandbox ("pause") process of the local dev
// cluster: it sleeps until SIGINT/SIGTERM and reaps any children it inherits
// (it is PID 1 when a pod shares its process namespace). Built with
// CGO_ENABLED=0 so the image needs nothing but this one static file.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for { // reap every exited child, without blocking
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
