package agent

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// MaxSecretsBytes is the most secret data (the sum of the values) a worker
// takes. The provider refuses more, so every set it sends fits the worker's
// secrets tmpfs (see secretsTmpfsBytes).
const MaxSecretsBytes = 1 << 20

// secretsTmpfsBytes is the size of the tmpfs an isolated worker keeps its
// secrets on. Besides MaxSecretsBytes of data it holds, during an update, a
// new copy of the largest file beside the old one, and it rounds every file
// up to whole pages: 2 MiB of that is room for 512 files.
const secretsTmpfsBytes = 4 * MaxSecretsBytes

// secretMode is how a secret file looks to the function, from start and after
// every update: readable by any user the function may run as.
const secretMode = 0o444

// SecretsUpdate is the body of PUT /secrets on the control API: the
// complete new set of the worker's secrets, by file name (values are base64
// in JSON).
type SecretsUpdate struct {
	Secrets map[string][]byte `json:"secrets"`
}

var (
	errSecretInvalid   = errors.New("invalid secret")
	errSecretsTooLarge = errors.New("secrets too large")
)

// secretFiles keeps the secret files of a worker in dir.
type secretFiles struct {
	mu  sync.Mutex
	dir string
	// owned are the files this agent wrote. Only those are removed when a
	// new set leaves them out: a worker that is not isolated writes into a
	// directory it does not have to itself.
	owned map[string]bool
}

func newSecretFiles(dir string) *secretFiles {
	return &secretFiles{dir: dir, owned: map[string]bool{}}
}

// validateSecrets checks what the provider sends, at start and on update.
func validateSecrets(secrets map[string][]byte) error {
	total := 0
	for name, value := range secrets {
		if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
			return fmt.Errorf("secret name %q is not a plain file name: %w", name, errSecretInvalid)
		}
		total += len(value)
	}
	if total > MaxSecretsBytes {
		return fmt.Errorf("secrets take %d bytes, more than the %d a worker holds: %w", total, MaxSecretsBytes, errSecretsTooLarge)
	}
	return nil
}

// replace makes the directory hold exactly secrets (of the files this agent
// owns): each file is replaced atomically, so the function reads either the
// old value or the new one, never a mix, as with a Kubernetes secret volume.
func (s *secretFiles) replace(secrets map[string][]byte) error {
	if err := validateSecrets(secrets); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("secrets dir: %w", err)
	}
	for _, name := range slices.Sorted(maps.Keys(secrets)) {
		if err := writeSecret(s.dir, name, secrets[name]); err != nil {
			return err
		}
		s.owned[name] = true
	}
	for name := range s.owned {
		if _, keep := secrets[name]; keep {
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove secret %s: %w", name, err)
		}
		delete(s.owned, name)
	}
	return nil
}

// writeSecret writes the value beside the file and renames it into place.
func writeSecret(dir, name string, value []byte) error {
	f, err := os.CreateTemp(dir, ".secret-*")
	if err != nil {
		return fmt.Errorf("write secret %s: %w", name, err)
	}
	_, err = f.Write(value)
	if err == nil {
		err = f.Chmod(secretMode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write secret %s: %w", name, err)
	}
	return nil
}
