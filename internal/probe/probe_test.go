package probe

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRun(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ok" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	assert.Equal(t, 0, Run(srv.URL+"/ok", io.Discard))
	assert.Equal(t, 1, Run(srv.URL+"/down", io.Discard))
	assert.Equal(t, 1, Run("http://127.0.0.1:1/", io.Discard))
}
