package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/pronghorn-openfaas/pronghorn/errdefs"
	"github.com/pronghorn-openfaas/pronghorn/funcspec"
)

// DefaultMaxBodyBytes bounds JSON bodies on /system/* when Config.MaxBodyBytes
// is zero. A deployment request with many env vars and annotations is a few KiB;
// 1 MiB leaves ample room while keeping a hostile client from making the
// provider buffer gigabytes.
const DefaultMaxBodyBytes int64 = 1 << 20

// DefaultNamespace is faas-netes' function namespace, used when
// Config.DefaultNamespace is empty.
const DefaultNamespace = funcspec.DefaultNamespace

// RequestDefaults is what every /system handler needs to parse a request:
// where functions live when the client names no namespace, how large a body
// it will read, and the provider's replica ceiling (0: the default).
type RequestDefaults struct {
	Namespace    string
	MaxBodyBytes int64
	MaxReplicas  uint64
}

func (d RequestDefaults) namespace() string {
	return funcspec.Namespace("", d.Namespace)
}

func (d RequestDefaults) maxReplicas() uint64 {
	if d.MaxReplicas == 0 {
		return funcspec.DefaultMaxReplicas
	}
	return d.MaxReplicas
}

func (d RequestDefaults) maxBody() int64 {
	if d.MaxBodyBytes <= 0 {
		return DefaultMaxBodyBytes
	}
	return d.MaxBodyBytes
}

// httpError answers with a one-line text/plain reason. Backend messages may
// carry newlines (wrapped exec output, say); clients such as faas-cli print
// the body verbatim, so it is folded to one line.
func httpError(w http.ResponseWriter, status int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if strings.ContainsAny(msg, "\r\n") {
		msg = strings.Join(strings.Fields(msg), " ")
	}
	http.Error(w, msg, status)
}

// backendError maps a backend failure to its status via errdefs and logs the
// ones that are the provider's fault (5xx), since the client cannot fix those.
func backendError(w http.ResponseWriter, r *http.Request, op string, err error) {
	status := errdefs.HTTPStatus(err)
	if status >= 500 {
		slog.Error("backend call failed", "op", op, "path", r.URL.Path, "err", err)
	}
	httpError(w, status, "%s: %v", op, err)
}

// readJSON decodes the whole body into v. It answers the client itself and
// returns false when the body is too large (413), empty or malformed (400).
// The body is read in full rather than streamed through a json.Decoder so that
// trailing garbage after the first value is rejected too.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	if r.ContentLength > limit {
		httpError(w, http.StatusRequestEntityTooLarge, "request body of %d bytes exceeds the limit of %d bytes", r.ContentLength, limit)
		return false
	}
	if r.Body == nil {
		httpError(w, http.StatusBadRequest, "request body is empty: a JSON object is required")
		return false
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			httpError(w, http.StatusRequestEntityTooLarge, "request body exceeds the limit of %d bytes", limit)
			return false
		}
		httpError(w, http.StatusBadRequest, "reading request body: %v", err)
		return false
	}
	if len(bytes.TrimSpace(data)) == 0 {
		httpError(w, http.StatusBadRequest, "request body is empty: a JSON object is required")
		return false
	}
	if err := json.Unmarshal(data, v); err != nil {
		httpError(w, http.StatusBadRequest, "malformed JSON: %v", err)
		return false
	}
	return true
}

// resolveNamespace picks the namespace of a /system request: the body's field
// (POST/PUT/DELETE bodies carry one in faas-provider's types), else
// ?namespace=, else the default. Both given and different is ambiguous, so it
// is refused rather than guessed. It answers the client itself on failure.
func resolveNamespace(w http.ResponseWriter, r *http.Request, d RequestDefaults, fromBody string) (string, bool) {
	fromQuery := lastQueryValue(r, "namespace")
	ns := fromBody
	switch {
	case fromBody != "" && fromQuery != "" && fromBody != fromQuery:
		httpError(w, http.StatusBadRequest, "namespace %q in the body differs from namespace %q in the query", fromBody, fromQuery)
		return "", false
	case ns == "":
		ns = fromQuery
	}
	if ns == "" {
		ns = d.namespace()
	}
	if err := validateNamespace(ns); err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return "", false
	}
	return ns, true
}

// lastQueryValue returns the last value of key like faas-provider's log
// handler does, without parsing the query when the key cannot be present
// (the common case for invocations).
func lastQueryValue(r *http.Request, key string) string {
	if !strings.Contains(r.URL.RawQuery, key) {
		return ""
	}
	vs := r.URL.Query()[key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// validateFunctionName applies faas-netes' rule (a Kubernetes DNS-1123 label)
// even in local mode, so a function deployable here is deployable on
// Kubernetes too, and names are safe as file and directory names.
func validateFunctionName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: function name is required", errdefs.ErrInvalid)
	}
	if !isDNS1123Label(name) {
		return fmt.Errorf("%w: function name %q must be a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)", errdefs.ErrInvalid, name)
	}
	return nil
}

func validateNamespace(ns string) error {
	if !isDNS1123Label(ns) {
		return fmt.Errorf("%w: namespace %q must be a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)", errdefs.ErrInvalid, ns)
	}
	return nil
}

// validateSecretName uses the DNS-1123 subdomain rule Kubernetes applies to
// Secret names; it also keeps '/' and ".." out, since the local runtime turns
// names into files under /var/openfaas/secrets.
func validateSecretName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: secret name is required", errdefs.ErrInvalid)
	}
	if len(name) > 253 {
		return fmt.Errorf("%w: secret name is longer than 253 characters", errdefs.ErrInvalid)
	}
	for label := range strings.SplitSeq(name, ".") {
		if !isDNS1123Label(label) {
			return fmt.Errorf("%w: secret name %q must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.')", errdefs.ErrInvalid, name)
		}
	}
	return nil
}

// isDNS1123Label is ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ with at most 63 bytes,
// hand-written because it runs on every invocation and a regexp costs more.
func isDNS1123Label(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i != 0 && i != len(s)-1:
		default:
			return false
		}
	}
	return true
}

// writeJSON answers 200 with v as JSON. Marshalling first means an encoding
// failure still gets a clean 500 instead of a half-written body.
func writeJSON(w http.ResponseWriter, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "encoding response: %v", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}
