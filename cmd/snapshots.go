package cmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/orchestrator"
	"github.com/pronghorn-openfaas/pronghorn/snapshot"
)

// snapshotOptions configures the snapshot store, CRIU and the engine's
// provider-wide defaults (each function may override them with
// com.pronghorn.* annotations).
type snapshotOptions struct {
	store          string
	dir            string
	minioEndpoint  string
	minioBucket    string
	minioAccessKey string
	minioSecretKey string
	minioTLS       bool
	keyFile        string
	criu           string
	engine         orchestrator.Config
}

func (o *snapshotOptions) flags(fs *pflag.FlagSet) []error {
	d := orchestrator.DefaultConfig()
	var errs []error
	note := func(err error) { errs = append(errs, err) }
	envString(fs, &o.store, "snapshot-store", "snapshot_store", "dir", "where snapshots are kept: dir, minio, or none (no snapshots: every worker starts cold)")
	envString(fs, &o.dir, "snapshot-dir", "snapshot_dir", "", "directory of the dir store (default <data-dir>/snapshots)")
	envString(fs, &o.minioEndpoint, "minio-endpoint", "minio_endpoint", "", "MinIO/S3 endpoint host:port")
	envString(fs, &o.minioBucket, "minio-bucket", "minio_bucket", "pronghorn-snapshots", "bucket, created if missing")
	envString(fs, &o.minioAccessKey, "minio-access-key", "minio_access_key", "", "MinIO access key")
	envString(fs, &o.minioSecretKey, "minio-secret-key", "minio_secret_key", "", "MinIO secret key")
	note(envBool(fs, &o.minioTLS, "minio-tls", "minio_tls", false, "use TLS to reach MinIO"))
	envString(fs, &o.keyFile, "snapshot-key-file", "snapshot_key_file", "", "encrypt snapshots at rest (AES-256-GCM) with the 32-byte key in this file (raw, hex or base64)")
	envString(fs, &o.criu, "criu", "criu_path", snapshot.DefaultCRIUPath, "criu binary the agents run")
	envString(fs, &o.engine.Strategy, "strategy", "strategy", d.Strategy, "default strategy: "+fmt.Sprint(orchestrator.Strategies()))
	note(envInt(fs, &o.engine.CheckpointAt, "checkpoint-at", "checkpoint_at", d.CheckpointAt, "default T of the fixed strategy"))
	note(envInt(fs, &o.engine.PoolCapacity, "pool-capacity", "pool_capacity", d.PoolCapacity, "default snapshot pool capacity C"))
	note(envInt(fs, &o.engine.EvictAfter, "evict-after", "evict_after", d.EvictAfter, "default requests a worker serves before it is retired (0 = never)"))
	note(envInt(fs, &o.engine.Horizon, "horizon", "horizon", d.Horizon, "default horizon M of tracked request numbers"))
	note(envFloat(fs, &o.engine.P, "p", "pronghorn_p", d.P, "default share of the pool kept by score when pruning"))
	note(envFloat(fs, &o.engine.Gamma, "gamma", "pronghorn_gamma", d.Gamma, "default share of the rest kept at random when pruning"))
	note(envFloat(fs, &o.engine.Eps, "eps", "pronghorn_eps", d.Eps, "default EWMA weight of a new latency"))
	note(envInt64(fs, &o.engine.Seed, "seed", "pronghorn_seed", d.Seed, "default random seed (0 = from the clock)"))
	return errs
}

// openStore builds the configured snapshot store; nil when snapshots are off.
// A MinIO store that does not answer yet is opened lazily: the provider
// serves (cold) meanwhile instead of refusing to start.
func (o *snapshotOptions) openStore(ctx context.Context, dataDir string, log *slog.Logger) (snapshot.Store, error) {
	var store snapshot.Store
	switch o.store {
	case "none":
		return nil, nil
	case "dir":
		dir := o.dir
		if dir == "" {
			dir = filepath.Join(dataDir, "snapshots")
		}
		s, err := snapshot.NewDirStore(dir)
		if err != nil {
			return nil, err
		}
		store = s
	case "minio":
		if o.minioEndpoint == "" {
			return nil, fmt.Errorf("--snapshot-store=minio needs --minio-endpoint")
		}
		cfg := snapshot.MinIOConfig{
			Endpoint: o.minioEndpoint, Bucket: o.minioBucket,
			AccessKey: o.minioAccessKey, SecretKey: o.minioSecretKey, UseTLS: o.minioTLS,
		}
		open := func(ctx context.Context) (snapshot.Store, error) { return snapshot.NewMinIOStore(ctx, cfg) }
		s, err := open(ctx)
		switch {
		case errors.Is(err, errdefs.ErrUnavailable):
			log.Warn("snapshot store not reachable yet; workers start cold until it is", "endpoint", o.minioEndpoint, "err", err)
			store = snapshot.NewLazyStore(open)
		case err != nil:
			return nil, fmt.Errorf("snapshot store: %w", err)
		default:
			store = s
		}
	default:
		return nil, fmt.Errorf("--snapshot-store %q: want dir, minio or none", o.store)
	}
	if o.keyFile == "" {
		return store, nil
	}
	key, err := snapshot.LoadKeyFile(o.keyFile)
	if err != nil {
		return nil, err
	}
	return snapshot.NewEncryptedStore(store, key)
}
