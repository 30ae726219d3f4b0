package errdefs

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestHTTPStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, http.StatusOK},
		{fmt.Errorf("image %q: %w", "x", ErrInvalid), http.StatusBadRequest},
		{fmt.Errorf("function f: %w", ErrNotFound), http.StatusNotFound},
		{fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", ErrAlreadyExists)), http.StatusConflict},
		{fmt.Errorf("no replica: %w", ErrUnavailable), http.StatusServiceUnavailable},
		{errors.New("disk on fire"), http.StatusInternalServerError},
	} {
		if got := HTTPStatus(tc.err); got != tc.want {
			t.Errorf("HTTPStatus(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
