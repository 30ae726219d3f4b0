package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/pronghorn-openfaas/pronghorn/handlers"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
)

// gatewayHint is why inspect through the gateway fails: the OpenFaaS
// gateway proxies only the faas-provider API's own /system routes to the
// provider, so pronghorn's extra ones are reachable only directly.
const gatewayHint = "the OpenFaaS gateway does not forward /system/pronghorn/*; " +
	"point --gateway at the provider itself, e.g. http://127.0.0.1:8081, or kubectl port-forward to it"

func newInspectCommand() *cobra.Command {
	var gateway, namespace, user, password string
	var raw bool
	cmd := &cobra.Command{
		Use:   "inspect FUNCTION",
		Short: "Show a function's snapshot orchestration state: strategy, snapshot pool, learned latencies, counters",
		Long: "Show a function's snapshot orchestration state: strategy, snapshot pool, learned latencies, counters.\n\n" +
			"It reads /system/pronghorn/functions/FUNCTION from the provider, so --gateway must be the provider's URL: " +
			gatewayHint + ". With the Helm chart: kubectl port-forward -n openfaas svc/pronghorn 8081:8080, " +
			"then --gateway http://127.0.0.1:8081.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			client := &http.Client{Timeout: 10 * time.Second}
			body, err := fetchState(cmd.Context(), client, gateway, args[0], namespace, user, password)
			if err != nil {
				return err
			}
			if raw {
				_, err = os.Stdout.Write(body)
				return err
			}
			var st orchestrator.State
			if err := json.Unmarshal(body, &st); err != nil {
				return fmt.Errorf("decode state: %w", err)
			}
			printState(os.Stdout, args[0], st)
			return nil
		},
	}
	envString(cmd.Flags(), &gateway, "gateway", "OPENFAAS_URL", "http://127.0.0.1:8080",
		"the provider's URL; not the OpenFaaS gateway's, which does not forward /system/pronghorn/*")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "", "function namespace (default: the provider's)")
	envString(cmd.Flags(), &user, "user", "basic_auth_user", defaultAuthUser, "basic auth user")
	envString(cmd.Flags(), &password, "password", "basic_auth_password", "",
		"basic auth password, sent when set (prefer the environment: flags show in ps); a local provider keeps it in <data-dir>/secrets/"+authPasswordFile)
	cmd.Flags().BoolVar(&raw, "json", false, "print the raw JSON")
	return cmd
}

// fetchState GETs a function's orchestration state from the provider at
// base and returns the JSON body.
func fetchState(ctx context.Context, client *http.Client, base, name, namespace, user, password string) ([]byte, error) {
	u := strings.TrimRight(base, "/") + handlers.InspectPath + url.PathEscape(name)
	if namespace != "" {
		u += "?namespace=" + url.QueryEscape(namespace)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if password != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, stateError(resp.StatusCode, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// stateError explains a failed inspect. The provider answers an unknown
// function with "function NAME.NS: ... not found"; any other 404 means the
// route itself is missing, and the usual cause is asking the gateway.
func stateError(code int, status, body string) error {
	if code == http.StatusUnauthorized {
		return fmt.Errorf("%s: %s: set basic_auth_password (and basic_auth_user if not %s) to the provider's credentials; "+
			"a local provider keeps them in <data-dir>/secrets", status, body, defaultAuthUser)
	}
	if code == http.StatusNotFound && !strings.HasPrefix(body, "function ") {
		return fmt.Errorf("%s: %s: %s (a provider with --backend kubernetes has no snapshot state to inspect)", status, body, gatewayHint)
	}
	return fmt.Errorf("%s: %s", status, body)
}

func printState(w io.Writer, name string, st orchestrator.State) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	c := st.Config
	fmt.Fprintf(tw, "function\t%s\n", name)
	fmt.Fprintf(tw, "strategy\t%s (C=%d E=%d M=%d T=%d p=%g gamma=%g eps=%g)\n",
		st.Strategy, c.PoolCapacity, c.EvictAfter, c.Horizon, c.CheckpointAt, c.P, c.Gamma, c.Eps)
	fmt.Fprintf(tw, "cold starts\t%d\nrestores\t%d\ncheckpoints\t%d\nfailed restores\t%d\nfailed checkpoints\t%d\n",
		st.ColdStarts, st.Restores, st.Checkpoints, st.FailedRestores, st.FailedCheckpoints)
	tw.Flush()

	fmt.Fprintf(w, "\nsnapshot pool (%d)\n", len(st.Pool))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REQUEST\tSIZE\tSCORE\tKEY")
	for _, s := range st.Pool {
		fmt.Fprintf(tw, "%d\t%.1f MB\t%.1f\t%s\n", s.RequestNumber, float64(s.SizeBytes)/1e6, s.Score, s.Key)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nlearned latency by lineage request number (µs)")
	tw = tabwriter.NewWriter(w, 0, 4, 1, ' ', tabwriter.AlignRight)
	shown := 0
	for i, v := range st.Weights {
		if v == 0 {
			continue
		}
		fmt.Fprintf(tw, "%d:\t%.0f\t", i+1, v)
		shown++
		if shown%8 == 0 {
			fmt.Fprintln(tw)
		}
	}
	if shown == 0 {
		fmt.Fprint(tw, "(none observed yet)")
	}
	fmt.Fprintln(tw)
	tw.Flush()
}
