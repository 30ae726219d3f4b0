// Command pronghorn is an OpenFaaS provider with the Pronghorn snapshot
// orchestrator embedded. One binary: the provider, and the agent that runs
// inside every worker.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	root := &cobra.Command{
		Use:           "pronghorn",
		Short:         "OpenFaaS provider with checkpoint/restore orchestration for JIT runtimes",
		Version:       fmt.Sprintf("%s (%s)", version, commit),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newProviderCommand(), newAgentCommand(), newInspectCommand(), newDoctorCommand(), newBenchCommand())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "pronghorn:", err)
		os.Exit(1)
	}
}
