package funcspec

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/openfaas/faas-provider/types"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
)

const (
	maxUint64 = "18446744073709551615" // 2^64-1
	twoTo63   = "9223372036854775808"  // 2^63: one past int64
)

// hostile are the values every numeric field is tried with.
var hostile = []string{maxUint64, twoTo63, "-1", "abc", "1e3", ""}

func labels(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestMinReplicas(t *testing.T) {
	for _, tc := range []struct {
		labels map[string]string
		want   uint64
	}{
		{nil, 1},
		{labels(), 1},
		{labels(LabelScaleMin, "3"), 3},
		{labels(LabelScaleMin, "+3"), 3}, // strconv.Atoi, as faas-netes
		{labels(LabelScaleMin, "0"), 1},
		{labels(LabelScaleMin, maxUint64), 1},
		{labels(LabelScaleMin, twoTo63), 1},
		{labels(LabelScaleMin, "9223372036854775807"), 1<<63 - 1},
		{labels(LabelScaleMin, "-1"), 1},
		{labels(LabelScaleMin, "abc"), 1},
		{labels(LabelScaleMin, "1e3"), 1},
		{labels(LabelScaleMin, ""), 1},
		{labels(LabelScaleMin, " 2"), 1},
	} {
		if got := MinReplicas(tc.labels); got != tc.want {
			t.Errorf("MinReplicas(%v) = %d, want %d", tc.labels, got, tc.want)
		}
	}
}

func TestMaxReplicas(t *testing.T) {
	for _, tc := range []struct {
		labels      map[string]string
		providerMax uint64
		want        uint64
		wantErr     bool
	}{
		{nil, 0, DefaultMaxReplicas, false},
		{nil, 7, 7, false},
		{labels(LabelScaleMax, "5"), 0, 5, false},
		{labels(LabelScaleMax, "20"), 0, 20, false},
		{labels(LabelScaleMax, "1"), 3, 1, false},
		{labels(LabelScaleMax, "3"), 3, 3, false},
		{labels(LabelScaleMax, "4"), 3, 0, true},
		{labels(LabelScaleMax, "21"), 0, 0, true},
		{labels(LabelScaleMax, "0"), 0, 0, true},
		{labels(LabelScaleMax, "+5"), 0, 0, true},
		{labels(LabelScaleMax, maxUint64), 0, 0, true},
		{labels(LabelScaleMax, maxUint64), 1<<64 - 1, 1<<64 - 1, false},
		{labels(LabelScaleMax, twoTo63), 0, 0, true},
		{labels(LabelScaleMax, "-1"), 0, 0, true},
		{labels(LabelScaleMax, "abc"), 0, 0, true},
		{labels(LabelScaleMax, "1e3"), 0, 0, true},
		{labels(LabelScaleMax, ""), 0, 0, true},
	} {
		got, err := MaxReplicas(tc.labels, tc.providerMax)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("MaxReplicas(%v, %d) = %d, %v; want %d, error %v", tc.labels, tc.providerMax, got, err, tc.want, tc.wantErr)
		}
		if err != nil {
			checkErr(t, err, LabelScaleMax, tc.labels[LabelScaleMax])
		}
	}
}

func TestCheckReplicas(t *testing.T) {
	for _, tc := range []struct {
		n           uint64
		labels      map[string]string
		providerMax uint64
		wantErr     string // substring; "" means no error
	}{
		{0, nil, 0, ""},
		{20, nil, 0, ""},
		{21, nil, 0, "the provider's maximum"},
		{1<<64 - 1, nil, 0, "replicas 18446744073709551615"},
		{1 << 63, nil, 0, "replicas 9223372036854775808"},
		{40, nil, 0, "more than 20"},
		{40, nil, 50, ""},
		{3, labels(LabelScaleMax, "3"), 0, ""},
		{4, labels(LabelScaleMax, "3"), 0, "the function's label " + LabelScaleMax},
		{0, labels(LabelScaleMax, "abc"), 0, LabelScaleMax + `="abc"`},
	} {
		err := CheckReplicas(tc.n, tc.labels, tc.providerMax)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("CheckReplicas(%d, %v, %d) = %v, want nil", tc.n, tc.labels, tc.providerMax, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("CheckReplicas(%d, %v, %d) = %v, want an error containing %q", tc.n, tc.labels, tc.providerMax, err, tc.wantErr)
		case err != nil:
			checkErr(t, err)
		}
	}
}

func TestNamespace(t *testing.T) {
	for _, tc := range []struct{ ns, def, want string }{
		{"", "", DefaultNamespace},
		{"", "fns", "fns"},
		{"team-a", "fns", "team-a"},
		{"team-a", "", "team-a"},
	} {
		if got := Namespace(tc.ns, tc.def); got != tc.want {
			t.Errorf("Namespace(%q, %q) = %q, want %q", tc.ns, tc.def, got, tc.want)
		}
	}
}

// TestValidateNumericFields tries every numeric field with every hostile
// value; want lists the ones that must be accepted.
func TestValidateNumericFields(t *testing.T) {
	withLabel := func(k string) func(v string) types.FunctionDeployment {
		return func(v string) types.FunctionDeployment {
			l := labels(k, v)
			return types.FunctionDeployment{Labels: &l}
		}
	}
	withRes := func(limits bool, set func(*types.FunctionResources, string)) func(v string) types.FunctionDeployment {
		return func(v string) types.FunctionDeployment {
			var r types.FunctionResources
			set(&r, v)
			if limits {
				return types.FunctionDeployment{Limits: &r}
			}
			return types.FunctionDeployment{Requests: &r}
		}
	}
	memory := func(r *types.FunctionResources, v string) { r.Memory = v }
	cpu := func(r *types.FunctionResources, v string) { r.CPU = v }
	gpu := func(r *types.FunctionResources, v string) { r.NvidiaGPU = v }

	// ok: which of hostile are accepted.
	for _, f := range []struct {
		field string
		req   func(string) types.FunctionDeployment
		ok    map[string]bool
	}{
		// Non-numeric and non-positive scale.min are ignored, as in
		// faas-netes; a numeric one above the maximum is refused.
		{LabelScaleMin, withLabel(LabelScaleMin), map[string]bool{"-1": true, "abc": true, "1e3": true, "": true}},
		{LabelScaleMax, withLabel(LabelScaleMax), nil},
		// "1e3" is a valid Kubernetes quantity (1000), within bounds.
		{"limits.memory", withRes(true, memory), map[string]bool{"1e3": true, "": true}},
		{"requests.memory", withRes(false, memory), map[string]bool{"1e3": true, "": true}},
		{"limits.cpu", withRes(true, cpu), map[string]bool{"1e3": true, "": true}},
		{"requests.cpu", withRes(false, cpu), map[string]bool{"1e3": true, "": true}},
		{"limits.nvidia.com/gpu", withRes(true, gpu), map[string]bool{"1e3": true, "": true}},
		{"requests.nvidia.com/gpu", withRes(false, gpu), map[string]bool{"1e3": true, "": true}},
		{"upstream_url port", func(v string) types.FunctionDeployment {
			return types.FunctionDeployment{EnvVars: map[string]string{UpstreamURLEnv: "http://127.0.0.1:" + v}}
		}, nil},
	} {
		for _, v := range hostile {
			t.Run(fmt.Sprintf("%s=%q", f.field, v), func(t *testing.T) {
				err := Validate(f.req(v), 0)
				if f.ok[v] {
					if err != nil {
						t.Fatalf("Validate = %v, want nil", err)
					}
					return
				}
				if err == nil {
					t.Fatal("Validate = nil, want an error")
				}
				field, value := f.field, v
				if field == "upstream_url port" {
					field, value = UpstreamURLEnv, "http://127.0.0.1:"+v
				}
				checkErr(t, err, field, value)
			})
		}
	}
}

func TestValidate(t *testing.T) {
	many := func(n int) map[string]string {
		m := make(map[string]string, n)
		for i := range n {
			m[fmt.Sprintf("K%d", i)] = "v"
		}
		return m
	}
	manyNames := func(n int) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = fmt.Sprintf("s%d", i)
		}
		return s
	}
	ptr := func(m map[string]string) *map[string]string { return &m }

	for _, tc := range []struct {
		name        string
		req         types.FunctionDeployment
		providerMax uint64
		wantErr     string // substring; "" means valid
	}{
		{"empty", types.FunctionDeployment{}, 0, ""},
		{"typical", types.FunctionDeployment{
			Service: "echo", Image: "echo:latest",
			EnvVars:  map[string]string{"write_debug": "true", UpstreamURLEnv: "http://127.0.0.1:5000"},
			Labels:   ptr(labels(LabelScaleMin, "2", LabelScaleMax, "10")),
			Limits:   &types.FunctionResources{Memory: "128Mi", CPU: "500m"},
			Requests: &types.FunctionResources{Memory: "64Mi", CPU: "100m"},
		}, 0, ""},

		{"scale.min at max", types.FunctionDeployment{Labels: ptr(labels(LabelScaleMin, "20"))}, 0, ""},
		{"scale.min above max", types.FunctionDeployment{Labels: ptr(labels(LabelScaleMin, "21"))}, 0, LabelScaleMin + `="21" is more than 20`},
		{"scale.min above label max", types.FunctionDeployment{Labels: ptr(labels(LabelScaleMin, "4", LabelScaleMax, "3"))}, 0, `="4" is more than 3`},
		{"scale.min 0 ignored", types.FunctionDeployment{Labels: ptr(labels(LabelScaleMin, "0"))}, 0, ""},
		{"scale.min below provider max", types.FunctionDeployment{Labels: ptr(labels(LabelScaleMin, "40"))}, 50, ""},
		{"scale.max above provider max", types.FunctionDeployment{Labels: ptr(labels(LabelScaleMax, "40"))}, 0, "1..20"},

		{"memory at bound", types.FunctionDeployment{Limits: &types.FunctionResources{Memory: "1Ti"}}, 0, ""},
		{"memory over bound", types.FunctionDeployment{Limits: &types.FunctionResources{Memory: "1025Gi"}}, 0, `limits.memory "1025Gi" is more than 1Ti`},
		{"memory zero", types.FunctionDeployment{Requests: &types.FunctionResources{Memory: "0"}}, 0, `requests.memory "0" must be more than 0`},
		{"cpu at bound", types.FunctionDeployment{Limits: &types.FunctionResources{CPU: "1024"}}, 0, ""},
		{"cpu over bound", types.FunctionDeployment{Limits: &types.FunctionResources{CPU: "1025"}}, 0, `limits.cpu "1025" is more than 1024`},
		{"cpu zero", types.FunctionDeployment{Limits: &types.FunctionResources{CPU: "0m"}}, 0, `limits.cpu "0m"`},
		{"requests above limits memory", types.FunctionDeployment{
			Limits: &types.FunctionResources{Memory: "64Mi"}, Requests: &types.FunctionResources{Memory: "128Mi"},
		}, 0, `requests.memory "128Mi" is more than limits.memory "64Mi"`},
		{"requests above limits cpu", types.FunctionDeployment{
			Limits: &types.FunctionResources{CPU: "0.5"}, Requests: &types.FunctionResources{CPU: "600m"},
		}, 0, `requests.cpu "600m" is more than limits.cpu "0.5"`},
		{"requests equal limits", types.FunctionDeployment{
			Limits: &types.FunctionResources{CPU: "500m", Memory: "1Gi"}, Requests: &types.FunctionResources{CPU: "0.5", Memory: "1024Mi"},
		}, 0, ""},
		{"requests only", types.FunctionDeployment{Requests: &types.FunctionResources{CPU: "2"}}, 0, ""},
		{"gpu fractional", types.FunctionDeployment{Limits: &types.FunctionResources{AmdGPU: "0.5"}}, 0, `limits.amd.com/gpu "0.5" is not a whole number`},
		{"gpu zero", types.FunctionDeployment{Limits: &types.FunctionResources{IntelGPU: "0"}}, 0, ""},

		{"upstream localhost", types.FunctionDeployment{EnvVars: map[string]string{UpstreamURLEnv: "http://localhost:8082/"}}, 0, ""},
		{"upstream port 65535", types.FunctionDeployment{EnvVars: map[string]string{UpstreamURLEnv: "http://127.0.0.1:65535"}}, 0, ""},
		{"upstream port 65536", types.FunctionDeployment{EnvVars: map[string]string{UpstreamURLEnv: "http://127.0.0.1:65536"}}, 0, "explicit port"},
		{"upstream port 0", types.FunctionDeployment{EnvVars: map[string]string{UpstreamURLEnv: "http://127.0.0.1:0"}}, 0, "explicit port"},
		{"upstream no port", types.FunctionDeployment{EnvVars: map[string]string{UpstreamURLEnv: "http://127.0.0.1"}}, 0, "explicit port"},
		{"upstream empty", types.FunctionDeployment{EnvVars: map[string]string{UpstreamURLEnv: ""}}, 0, `envVars["upstream_url"]=""`},
		{"upstream https", types.FunctionDeployment{EnvVars: map[string]string{UpstreamURLEnv: "https://127.0.0.1:5000"}}, 0, "http://"},
		{"upstream remote", types.FunctionDeployment{EnvVars: map[string]string{UpstreamURLEnv: "http://10.0.0.1:5000"}}, 0, "host 127.0.0.1 or localhost"},
		{"upstream userinfo", types.FunctionDeployment{EnvVars: map[string]string{UpstreamURLEnv: "http://u:p@127.0.0.1:5000"}}, 0, "user information"},
		{"upstream garbage", types.FunctionDeployment{EnvVars: map[string]string{UpstreamURLEnv: "http://127.0.0.1:50\x00"}}, 0, "NUL"},

		{"env empty name", types.FunctionDeployment{EnvVars: map[string]string{"": "x"}}, 0, "empty name"},
		{"env name with =", types.FunctionDeployment{EnvVars: map[string]string{"A=B": "x"}}, 0, `"A=B"`},
		{"env name with NUL", types.FunctionDeployment{EnvVars: map[string]string{"A\x00": "x"}}, 0, `"A\x00"`},
		{"env value with NUL", types.FunctionDeployment{EnvVars: map[string]string{"A": "x\x00y"}}, 0, `envVars["A"]="x\x00y"`},
		{"env value with =", types.FunctionDeployment{EnvVars: map[string]string{"A": "x=y"}}, 0, ""},
		{"envProcess with NUL", types.FunctionDeployment{EnvProcess: "cat\x00"}, 0, "envProcess"},

		{"env vars at bound", types.FunctionDeployment{EnvVars: many(MaxEntries)}, 0, ""},
		{"too many env vars", types.FunctionDeployment{EnvVars: many(MaxEntries + 1)}, 0, "envVars has 1001 entries"},
		{"too many labels", types.FunctionDeployment{Labels: ptr(many(MaxEntries + 1))}, 0, "labels has 1001 entries"},
		{"too many annotations", types.FunctionDeployment{Annotations: ptr(many(MaxEntries + 1))}, 0, "annotations has 1001 entries"},
		{"too many secrets", types.FunctionDeployment{Secrets: manyNames(MaxEntries + 1)}, 0, "secrets has 1001 entries"},
		{"too many constraints", types.FunctionDeployment{Constraints: manyNames(MaxEntries + 1)}, 0, "constraints has 1001 entries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.req, tc.providerMax)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.wantErr)
			case err != nil:
				checkErr(t, err)
			}
		})
	}
}

// checkErr asserts the contract every funcspec error keeps: it is an
// errdefs.ErrInvalid, it is one line, and it names each of mentions (the
// field and the value, quoted as %q would).
func checkErr(t *testing.T, err error, mentions ...string) {
	t.Helper()
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("%v does not wrap errdefs.ErrInvalid", err)
	}
	if strings.ContainsAny(err.Error(), "\r\n") {
		t.Errorf("%q is not one line", err.Error())
	}
	for i, m := range mentions {
		if i > 0 {
			m = fmt.Sprintf("%q", m)
		}
		if !strings.Contains(err.Error(), m) {
			t.Errorf("%q does not mention %s", err.Error(), m)
		}
	}
}
