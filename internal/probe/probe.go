// Package probe is the health check the project's binaries run on themselves in distroless
// containers, which have no shell or curl: `BINARY healthcheck URL` exits 0 on a 2xx answer.
package probe

import (
	"fmt"
	"io"
	"net/http"
	"time"
)

// Run GETs url and returns the process exit code: 0 for a 2xx answer, 1 otherwise.
func Run(url string, stderr io.Writer) int {
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fmt.Fprintf(stderr, "healthcheck: %s answered %s\n", url, resp.Status)
		return 1
	}
	return 0
}
