package vaultadmin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"
)

// The vault/api client's errors span lines and repeat the URL; the CLI must
// print one line naming the address and the cause.
func TestWrapIsOneLine(t *testing.T) {
	const addr = "http://127.0.0.1:8200"
	refused := &url.Error{Op: "Get", URL: addr + "/v1/sys/seal-status", Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"forbidden", &vaultapi.ResponseError{HTTPMethod: "PUT", URL: addr + "/v1/pki/root/generate/internal", StatusCode: 403, Errors: []string{"permission denied"}},
			"vault at http://127.0.0.1:8200: generating: permission denied (HTTP 403: wrong or expired token, or its policy does not allow this)"},
		{"sealed", &vaultapi.ResponseError{StatusCode: 503, Errors: []string{"Vault is sealed"}},
			"vault at http://127.0.0.1:8200: generating: Vault is sealed (HTTP 503)"},
		{"multi-line detail", &vaultapi.ResponseError{StatusCode: 400, Errors: []string{"1 error occurred:\n\t* bad ttl\n\n"}},
			"vault at http://127.0.0.1:8200: generating: HTTP 400: 1 error occurred: * bad ttl"},
		{"unreachable", fmt.Errorf("wrapped: %w", refused),
			"vault at http://127.0.0.1:8200: generating: unreachable: dial tcp: connect: connection refused"},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), "vault at http://127.0.0.1:8200: generating: timed out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := wrap(addr, "generating", tc.err).Error()
			if got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
			if strings.Contains(got, "\n") {
				t.Errorf("multi-line error %q", got)
			}
		})
	}
	if wrap(addr, "x", nil) != nil {
		t.Error("wrap(nil) != nil")
	}
}
