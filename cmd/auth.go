package cmd

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/openfaas/faas-provider/auth"
)

// The credential files follow faas-provider's convention, so the OpenFaaS
// gateway's secret, faasd's layout and faas-cli's habits all fit.
const (
	authUserFile     = "basic-auth-user"
	authPasswordFile = "basic-auth-password"
	defaultAuthUser  = "admin"
	// kubernetesSecretMountPath is where the chart mounts the gateway's
	// basic-auth Secret, as faas-netes expects it.
	kubernetesSecretMountPath = "/var/openfaas/secrets"
)

// authSource says where the provider's basic auth credentials live.
type authSource struct {
	dir string
	// generate creates missing files: only in the provider's own data dir,
	// never in a directory the operator named, where a missing file more
	// likely means a mount that failed than a first start.
	generate bool
}

func (o providerOptions) authSource() authSource {
	switch {
	case o.secretMountPath != "":
		return authSource{dir: o.secretMountPath}
	case o.backend == "kubernetes":
		return authSource{dir: kubernetesSecretMountPath}
	default:
		return authSource{dir: filepath.Join(o.dataDir, "secrets"), generate: true}
	}
}

// loadBasicAuth returns the credentials /system/* requires, or nil when the
// operator turned basic auth off.
func loadBasicAuth(o providerOptions, log *slog.Logger) (*auth.BasicAuthCredentials, error) {
	if !o.basicAuth {
		log.Warn("basic auth is OFF (--basic-auth=false): anyone who can reach the API can deploy functions and read their secrets",
			"port", o.port)
		return nil, nil
	}
	src := o.authSource()
	if src.generate {
		created, err := ensureBasicAuthFiles(src.dir)
		if err != nil {
			return nil, fmt.Errorf("basic auth: %w", err)
		}
		if created {
			password := filepath.Join(src.dir, authPasswordFile)
			log.Info("generated basic auth credentials", "user", defaultAuthUser, "password_file", password,
				"login", fmt.Sprintf("faas-cli login --gateway http://127.0.0.1:%d --password-stdin < %s", o.port, password))
		}
	}
	return readBasicAuth(src.dir)
}

// readBasicAuth reads the credentials in dir and refuses empty ones, which
// would let anyone in who sends an empty password.
func readBasicAuth(dir string) (*auth.BasicAuthCredentials, error) {
	reader := auth.ReadBasicAuthFromDisk{SecretMountPath: dir}
	creds, err := reader.Read()
	if err != nil {
		return nil, fmt.Errorf("basic auth: %w (provide %s and %s there, or pass --basic-auth=false)", err, authUserFile, authPasswordFile)
	}
	if creds.User == "" || creds.Password == "" {
		return nil, fmt.Errorf("basic auth: %s or %s in %s is empty", authUserFile, authPasswordFile, dir)
	}
	return creds, nil
}

// ensureBasicAuthFiles creates whichever of the credential files is missing
// in dir, as faasd does at install: user "admin" and a random password. It
// reports whether it created any; existing files are left as they are.
func ensureBasicAuthFiles(dir string) (bool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("create %s: %w", dir, err)
	}
	password, err := newPassword()
	if err != nil {
		return false, err
	}
	created := false
	for _, f := range []struct{ name, value string }{{authUserFile, defaultAuthUser}, {authPasswordFile, password}} {
		ok, err := createFileOnce(filepath.Join(dir, f.name), []byte(f.value))
		if err != nil {
			return created, err
		}
		created = created || ok
	}
	return created, nil
}

// newPassword returns 256 random bits as 64 hex digits: no character a
// shell, a YAML file or curl's config would need quoted.
func newPassword() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate password: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// createFileOnce writes data to path with mode 0600 unless path exists, and
// reports whether it wrote it. The file appears whole or not at all: it is
// written and synced under a temporary name and then hard-linked into place,
// which, unlike a rename, never replaces a file another process created in
// the meantime.
func createFileOnce(path string, data []byte) (bool, error) {
	if _, err := os.Lstat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("check %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // makes the new name durable; the file itself already is
		d.Close()
	}
	return true, nil
}
