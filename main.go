// Command pronghorn is an OpenFaaS provider with the Pronghorn snapshot
// orchestrator embedded. One binary: the provider, and the agent that runs
// inside every worker; the subcommands live in package cmd.
package main

import (
	"fmt"
	"os"

	"github.com/pronghorn-openfaas/pronghorn/cmd"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	if err := cmd.NewRoot(cmd.BuildInfo{Version: version, Commit: commit}).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "pronghorn:", err)
		os.Exit(1)
	}
}
