// Package errdefs holds the error kinds that cross package boundaries, so the
// HTTP layer can map a backend's failure to a status code without knowing the
// backend. Wrap one of these with fmt.Errorf("...: %w", errdefs.ErrNotFound).
package errdefs

import (
	"errors"
	"net/http"
)

var (
	// ErrInvalid marks a request that can never succeed as sent (bad name, bad value).
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound marks a function, secret or snapshot that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists marks a create of something that is already there.
	ErrAlreadyExists = errors.New("already exists")
	// ErrUnavailable marks a transient condition: no ready replica in time, a store that does not answer.
	ErrUnavailable = errors.New("unavailable")
)

// HTTPStatus maps an error to the status code the faas-provider API answers with.
func HTTPStatus(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrAlreadyExists):
		return http.StatusConflict
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}
