package cmd

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/pronghorn-openfaas/pronghorn/orchestrator/sim"
)

func newBenchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmarks and evaluations",
	}
	cmd.AddCommand(newBenchSimCommand(), newBenchEvalCommand())
	return cmd
}

// newBenchSimCommand drives the real engine (on a temporary bbolt file) with
// a synthetic JIT warm-up latency model, so strategies can be compared over
// thousands of evictions in seconds, without CRIU.
func newBenchSimCommand() *cobra.Command {
	var o sim.Options
	m := sim.DefaultModel()
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Compare strategies in a synthetic warm-up model: median/p90/mean latency per strategy and eviction rate",
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Model = m
			res, err := sim.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			return res.WriteTable(os.Stdout)
		},
	}
	fs := cmd.Flags()
	fs.StringSliceVar(&o.Strategies, "strategies", []string{"cold", "fixed", "request-centric", "bandit"}, "strategies to compare (fixed runs with T=1)")
	fs.IntSliceVar(&o.Rates, "rates", []int{20, 4, 1}, "eviction rates E")
	fs.IntVar(&o.Requests, "requests", 5000, "sequential requests per strategy and rate")
	fs.Int64Var(&o.Seed, "seed", 1, "random seed")
	fs.DurationVar(&m.Floor, "floor", m.Floor, "fully warm latency")
	fs.DurationVar(&m.Peak, "peak", m.Peak, "first-request (unoptimised) latency")
	fs.Float64Var(&m.Tau, "tau", m.Tau, "warm-up constant, in requests")
	fs.Float64Var(&m.Noise, "noise", m.Noise, "log-normal sigma of the latency noise")
	fs.Float64Var(&m.GCProb, "gc-prob", m.GCProb, "probability of a GC pause per request")
	fs.DurationVar(&m.InitCost, "init-cost", m.InitCost, "extra latency of a cold worker's first request")
	fs.DurationVar(&m.RestoreCost, "restore-cost", m.RestoreCost, "extra latency of a restored worker's first request")
	fs.DurationVar(&m.CheckpointCost, "checkpoint-cost", m.CheckpointCost, "extra latency of the request after one that triggered a checkpoint")
	fs.IntVar(&m.RegisterDelay, "register-delay", m.RegisterDelay, "requests served before a checkpoint's snapshot is in the pool")
	return cmd
}
