package cmd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pronghorn-openfaas/pronghorn/benchmarks/eval"
)

// newBenchReportCommand regenerates an evaluation report from results
// directories alone: no provider, no root. It hangs below `bench eval`
// (`pronghorn bench eval report`); wiring it as `pronghorn bench report`
// too is one AddCommand in cmd/bench.go.
func newBenchReportCommand() *cobra.Command {
	var (
		out           string
		title         string
		noCalibration bool
	)
	cmd := &cobra.Command{
		Use:   "report RESULTS_DIR... -o DIR",
		Short: "Write the evaluation report (README.md, PNG/SVG figures, CSV tables) from results directories",
		Long: `Reads the completed chunks of one or more results directories written by
"pronghorn bench eval" and writes into -o a README.md with the environment, the
summary table with reductions against cold and fixed(1), the warm-up curves and
the floor, latency CDFs, Tables 4 and 5 beside the artifact's published values,
the spread over seeds, the cost of the mechanism and the simulator's
calibration, plus figures/ (PNG and SVG) and tables/ (CSV). Nothing in it is
typed by hand: rerunning this command over the same data rewrites it.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, dirs []string) error {
			if out == "" {
				return fmt.Errorf("-o DIR is required")
			}
			for _, d := range dirs {
				if st, err := os.Stat(d); err != nil || !st.IsDir() {
					return fmt.Errorf("results directory %s: not a directory", d)
				}
			}
			command := "pronghorn bench eval report " + strings.Join(slashed(dirs), " ") + " -o " + filepath.ToSlash(out)
			if title != "" {
				command += " --title '" + title + "'"
			}
			if err := eval.WriteReport(cmd.Context(), out, dirs, eval.ReportOptions{Title: title, Command: command, NoCalibration: noCalibration}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "report: %s\n", filepath.Join(out, "README.md"))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "report directory (its figures/ and tables/ are rewritten)")
	cmd.Flags().StringVar(&title, "title", "", "the report's heading (default: Pronghorn evaluation)")
	cmd.Flags().BoolVar(&noCalibration, "no-calibration", false, "skip fitting and running the simulator")
	return cmd
}

// newBenchCalibrateCommand fits the simulator's model to measured traces
// and compares simulated with real latencies.
func newBenchCalibrateCommand() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "calibrate RESULTS_DIR...",
		Short: "Fit the simulator's warm-up and cost model to measured traces and compare simulated with real latencies",
		Long: `Fits orchestrator/sim's model to each benchmark of the results directories (the
warm-up curve of the never-evicted worker, noise and GC pauses, cold and
restored first-request costs, the cost of a checkpoint to the next request,
snapshot size), runs the simulator with it on the same grid, and prints the
fitted parameters and simulated against real latencies. With -o it also
writes the figures (PNG, SVG) and tables (CSV) there.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, dirs []string) error {
			ds, err := eval.LoadResults(dirs...)
			if err != nil {
				return err
			}
			cals, err := eval.Calibrate(cmd.Context(), ds)
			if err != nil {
				return err
			}
			if len(cals) == 0 {
				return fmt.Errorf("no warm-up runs in %s: nothing to calibrate against", strings.Join(dirs, ", "))
			}
			w := cmd.OutOrStdout()
			for _, t := range []eval.Table{eval.CalibrationTable(cals), eval.CalibrationCompareTable(cals, 1)} {
				fmt.Fprintf(w, "%s\n\n", t.Title)
				if err := t.WriteText(w); err != nil {
					return err
				}
				fmt.Fprintln(w)
			}
			if out == "" {
				return nil
			}
			paths, err := eval.WriteCalibration(out, cals)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "calibration: %s\n", strings.Join(paths, ", "))
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "also write figures and tables here")
	return cmd
}

func slashed(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.ToSlash(p)
	}
	return out
}
