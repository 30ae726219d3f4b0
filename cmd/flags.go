package cmd

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Flags take their default from an environment variable named as faas-netes
// names its settings (read_timeout, basic_auth, ...), so the same deployment
// manifests configure either provider. An explicit flag wins over the
// environment. Each flag records its variable's name (envAnnotation), so
// that settings given by that name elsewhere (the provider's ConfigMap and
// Secret in Kubernetes, clusterconfig.go) find their flag.

// envAnnotation is the pflag annotation holding a flag's environment variable.
const envAnnotation = "pronghorn/env"

// markEnv records env as the environment variable of flag name.
func markEnv(fs *pflag.FlagSet, name, env string) {
	// Only fails for a flag that does not exist, which the caller just defined.
	_ = fs.SetAnnotation(name, envAnnotation, []string{env})
}

// flagEnv is the environment variable of flag f, "" if it has none.
func flagEnv(f *pflag.Flag) string {
	if v := f.Annotations[envAnnotation]; len(v) == 1 {
		return v[0]
	}
	return ""
}

func envString(fs *pflag.FlagSet, p *string, name, env, def, usage string) {
	if v, ok := os.LookupEnv(env); ok {
		def = v
	}
	fs.StringVar(p, name, def, fmt.Sprintf("%s (env %s)", usage, env))
	markEnv(fs, name, env)
}

// envStringArray is a repeatable flag whose environment variable holds the
// values comma-separated. Flag values are not split, so a path may hold a comma.
func envStringArray(fs *pflag.FlagSet, p *[]string, name, env, usage string) {
	var def []string
	if v, ok := os.LookupEnv(env); ok {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				def = append(def, s)
			}
		}
	}
	fs.StringArrayVar(p, name, def, fmt.Sprintf("%s (repeatable; env %s, comma-separated)", usage, env))
	markEnv(fs, name, env)
}

func envInt(fs *pflag.FlagSet, p *int, name, env string, def int, usage string) error {
	if v, ok := os.LookupEnv(env); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("env %s=%q: not a number", env, v)
		}
		def = n
	}
	fs.IntVar(p, name, def, fmt.Sprintf("%s (env %s)", usage, env))
	markEnv(fs, name, env)
	return nil
}

func envBool(fs *pflag.FlagSet, p *bool, name, env string, def bool, usage string) error {
	if v, ok := os.LookupEnv(env); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("env %s=%q: not a boolean", env, v)
		}
		def = b
	}
	fs.BoolVar(p, name, def, fmt.Sprintf("%s (env %s)", usage, env))
	markEnv(fs, name, env)
	return nil
}

// envDuration accepts a Go duration or, as faas-netes does, a bare number of seconds.
func envDuration(fs *pflag.FlagSet, p *time.Duration, name, env string, def time.Duration, usage string) error {
	if v, ok := os.LookupEnv(env); ok {
		d, err := parseDuration(v)
		if err != nil {
			return fmt.Errorf("env %s=%q: %w", env, v, err)
		}
		def = d
	}
	fs.DurationVar(p, name, def, fmt.Sprintf("%s (env %s)", usage, env))
	markEnv(fs, name, env)
	return nil
}

func parseDuration(v string) (time.Duration, error) {
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("not a duration")
	}
	return d, nil
}

func envFloat(fs *pflag.FlagSet, p *float64, name, env string, def float64, usage string) error {
	if v, ok := os.LookupEnv(env); ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("env %s=%q: not a number", env, v)
		}
		def = f
	}
	fs.Float64Var(p, name, def, fmt.Sprintf("%s (env %s)", usage, env))
	markEnv(fs, name, env)
	return nil
}

func envInt64(fs *pflag.FlagSet, p *int64, name, env string, def int64, usage string) error {
	if v, ok := os.LookupEnv(env); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("env %s=%q: not a number", env, v)
		}
		def = n
	}
	fs.Int64Var(p, name, def, fmt.Sprintf("%s (env %s)", usage, env))
	markEnv(fs, name, env)
	return nil
}

func envUint64(fs *pflag.FlagSet, p *uint64, name, env string, def uint64, usage string) error {
	if v, ok := os.LookupEnv(env); ok {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return fmt.Errorf("env %s=%q: not a whole number", env, v)
		}
		def = n
	}
	fs.Uint64Var(p, name, def, fmt.Sprintf("%s (env %s)", usage, env))
	markEnv(fs, name, env)
	return nil
}
