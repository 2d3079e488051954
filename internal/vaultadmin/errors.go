package vaultadmin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"
)

// Error is a failed Vault call, flattened to one line: the address, what was
// being done, and why it failed. The vault/api client's own errors span many
// lines and repeat the URL; this keeps CLI output to one line per failure.
type Error struct {
	// Addr is the Vault address the call went to.
	Addr string
	// Op says what was being done, e.g. "enabling the PKI engine at pki/".
	Op string
	// Status is the HTTP status code, 0 when no response arrived.
	Status int
	// Cause is a short human reason, e.g. "permission denied (wrong or expired token?)".
	Cause string
	// Err is the underlying error.
	Err error
}

func (e *Error) Error() string {
	return fmt.Sprintf("vault at %s: %s: %s", e.Addr, e.Op, e.Cause)
}

func (e *Error) Unwrap() error { return e.Err }

// IsStatus reports whether err is a Vault response with the given HTTP status.
func IsStatus(err error, status int) bool {
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode == status
	}
	var e *Error
	return errors.As(err, &e) && e.Status == status
}

// wrap turns an error from the vault/api client into an *Error. It returns
// nil for a nil err.
func wrap(addr, op string, err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	e := &Error{Addr: addr, Op: op, Err: err, Cause: cause(err)}
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		e.Status = re.StatusCode
	}
	return e
}

// cause renders err as a single line, without the request URL (the address
// is already in the message) and without any header or body echo.
func cause(err error) string {
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		msgs := make([]string, 0, len(re.Errors))
		for _, m := range re.Errors {
			if m = oneLine(m); m != "" {
				msgs = append(msgs, m)
			}
		}
		detail := strings.Join(msgs, "; ")
		switch {
		case re.StatusCode == 403:
			if detail == "" || detail == "permission denied" {
				return "permission denied (HTTP 403: wrong or expired token, or its policy does not allow this)"
			}
			return "permission denied (HTTP 403): " + detail
		case re.StatusCode == 503 && strings.Contains(strings.ToLower(detail), "sealed"):
			return "Vault is sealed (HTTP 503)"
		case detail == "":
			return fmt.Sprintf("HTTP %d", re.StatusCode)
		default:
			return fmt.Sprintf("HTTP %d: %s", re.StatusCode, detail)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		var oe *net.OpError
		if errors.As(ue.Err, &oe) {
			return "unreachable: " + oneLine(oe.Error())
		}
		if ue.Timeout() {
			return "unreachable: timed out"
		}
		return "unreachable: " + oneLine(ue.Err.Error())
	}
	return oneLine(err.Error())
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
