// Package cmd holds the pronghorn binary's subcommands: the provider, the
// agent that runs inside every worker, and the operator's tools (inspect,
// doctor, bench).
package cmd

import (
	"fmt"

	"github.com/spf13/cobra"
)

// BuildInfo is what the binary was built from.
type BuildInfo struct {
	Version, Commit string
}

// NewRoot returns the pronghorn command with every subcommand.
func NewRoot(build BuildInfo) *cobra.Command {
	root := &cobra.Command{
		Use:           "pronghorn",
		Short:         "OpenFaaS provider with checkpoint/restore orchestration for JIT runtimes",
		Version:       fmt.Sprintf("%s (%s)", build.Version, build.Commit),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newProviderCommand(build), newAgentCommand(), newInspectCommand(), newDoctorCommand(), newBenchCommand())
	return root
}
