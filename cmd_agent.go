package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pronghorn-openfaas/pronghorn/agent"
)

func newAgentCommand() *cobra.Command {
	var runDir, id string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run one worker: start or restore the function and proxy to it (started by the provider; reads its config as JSON on stdin)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return agent.Main(ctx, os.Stdin, os.Stdout, os.Stderr, id)
		},
	}
	// Both only mark the process so a restarted provider can find its
	// orphans; the agent itself reads everything from stdin.
	cmd.Flags().StringVar(&runDir, "run-dir", "", "run directory of the provider that started this agent")
	cmd.Flags().StringVar(&id, "id", "", "worker id")
	return cmd
}
