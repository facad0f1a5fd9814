// Package nginx holds nginx.conf, the configuration of nginx in front of the demo API (the
// compose stack mounts it; operators copy it), and derives from it the same configuration for
// a stack on this machine — the local dev stack and the end-to-end tests run that — so the two
// cannot drift apart.
package nginx

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Conf is nginx.conf, as shipped.
//
//go:embed nginx.conf
var Conf string

// Local says where the pieces of a stack on this machine are.
type Local struct {
	Listen    string // host:port nginx listens on (instead of :8080)
	API       string // host:port of the demo API (instead of demoapi:3000)
	AuthzHTTP string // host:port of the authz HTTP decision API (instead of authz:9002)
	// Dir holds the pid file, logs and temporary files, so that nginx runs unprivileged:
	// nginx -p DIR -c DIR/nginx.conf -g 'daemon off;'
	Dir string
}

// headersMore is the load_module line of nginx.conf; Render points it at the module installed on
// this machine (relative paths would be read under the -p prefix).
const headersMore = "load_module modules/ngx_http_headers_more_filter_module.so;"

// ErrNoHeadersMore: nginx.conf needs the headers-more module, and it is not installed.
var ErrNoHeadersMore = errors.New("nginx's headers-more module is not installed (Debian/Ubuntu: apt-get install libnginx-mod-http-headers-more-filter)")

// moduleDirs are where Debian (and nginx.org's packages) install dynamic modules.
var moduleDirs = []string{"/usr/lib/nginx/modules", "/usr/share/nginx/modules", "/etc/nginx/modules", "/usr/lib64/nginx/modules"}

// Render returns Conf with l's addresses and paths and one worker process. It fails when
// Conf no longer has the lines it replaces (then this function must follow the file), and with
// ErrNoHeadersMore when the module nginx.conf loads is not installed.
func (l Local) Render() (string, error) {
	module, err := HeadersMore()
	if err != nil {
		return "", err
	}
	text := Conf
	for _, r := range []struct{ old, repl string }{
		{headersMore, "load_module " + module + ";"},
		{"server demoapi:3000;", "server " + l.API + ";"},
		{"server authz:9002;", "server " + l.AuthzHTTP + ";"},
		{"listen 8080;", "listen " + l.Listen + ";"},
		{"worker_processes auto;", fmt.Sprintf("worker_processes 1;\npid %s;\nerror_log %s info;",
			filepath.Join(l.Dir, "nginx.pid"), filepath.Join(l.Dir, "error.log"))},
		{"access_log /var/log/nginx/access.log authz;", "access_log " + filepath.Join(l.Dir, "access.log") + " authz;"},
		{"\nhttp {", fmt.Sprintf("\nhttp {\n    client_body_temp_path %[1]s/body;\n    proxy_temp_path %[1]s/proxy;\n"+
			"    fastcgi_temp_path %[1]s/fastcgi;\n    uwsgi_temp_path %[1]s/uwsgi;\n    scgi_temp_path %[1]s/scgi;", l.Dir)},
	} {
		if strings.Count(text, r.old) != 1 {
			return "", fmt.Errorf("deploy/nginx/nginx.conf no longer has exactly one %q: update deploy/nginx.Local", r.old)
		}
		text = strings.Replace(text, r.old, r.repl, 1)
	}
	return text, nil
}

// HeadersMore finds the headers-more module on this machine, or says ErrNoHeadersMore.
func HeadersMore() (string, error) {
	for _, d := range moduleDirs {
		p := filepath.Join(d, "ngx_http_headers_more_filter_module.so")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", ErrNoHeadersMore
}

// Binary finds the nginx executable: on PATH, or where Debian installs it (/usr/sbin, which is
// not on every user's PATH).
func Binary() (string, error) {
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path, nil
		}
	}
	return "", errors.New("nginx not found (Debian/Ubuntu: apt-get install nginx-light libnginx-mod-http-headers-more-filter)")
}
