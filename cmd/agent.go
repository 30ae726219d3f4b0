package cmd

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pronghorn-openfaas/pronghorn/agent"
)

func newAgentCommand() *cobra.Command {
	var runDir, id string
	var fromEnv bool
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run one worker: start or restore the function and proxy to it (started by the provider with its config as JSON on stdin, or --from-env in a pod)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			if fromEnv {
				cfg, err := agent.ConfigFromEnv(os.Environ())
				if err != nil {
					return err
				}
				a, err := agent.New(cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)), os.Stdout)
				if err != nil {
					return err
				}
				return a.Run(ctx)
			}
			return agent.Main(ctx, os.Stdin, os.Stdout, os.Stderr, id)
		},
	}
	// Both only mark the process so a restarted provider can find its
	// orphans; the agent itself reads everything from stdin.
	cmd.Flags().StringVar(&runDir, "run-dir", "", "run directory of the provider that started this agent")
	cmd.Flags().StringVar(&id, "id", "", "worker id")
	cmd.Flags().BoolVar(&fromEnv, "from-env", false, "read the config from the environment (fprocess, upstream_url, PRONGHORN_*), as the entrypoint of a Kubernetes function pod")
	return cmd
}
