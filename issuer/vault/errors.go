package vault

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"
)

// Error is a failed Vault call. Messages are Vault's own error strings, kept
// verbatim so that conditions show operators what Vault said. Paths never
// carry secrets (tokens travel in headers, credentials in bodies), so the
// error text is safe to surface.
type Error struct {
	// Op names the operation, e.g. "sign-intermediate" or "login".
	Op string
	// Path is the Vault API path, without the /v1/ prefix.
	Path string
	// StatusCode is Vault's HTTP status, or 0 when no response arrived.
	StatusCode int
	// Messages are the "errors" Vault returned.
	Messages []string
	// Err is the transport error when StatusCode is 0.
	Err error
}

func (e *Error) Error() string {
	if e.StatusCode == 0 {
		return fmt.Sprintf("vault %s (%s): %v", e.Op, e.Path, e.Err)
	}
	msg := strings.Join(e.Messages, "; ")
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("vault %s (%s): HTTP %d: %s", e.Op, e.Path, e.StatusCode, msg)
}

func (e *Error) Unwrap() error { return e.Err }

// wrapError turns an error from the vault/api client into an *Error.
func wrapError(op, path string, err error) error {
	if err == nil {
		return nil
	}
	var re *vaultapi.ResponseError
	if errors.As(err, &re) {
		return &Error{Op: op, Path: path, StatusCode: re.StatusCode, Messages: re.Errors}
	}
	return &Error{Op: op, Path: path, Err: err}
}

func statusOf(err error) (int, bool) {
	var ve *Error
	if errors.As(err, &ve) {
		return ve.StatusCode, true
	}
	return 0, false
}

// IsPermissionDenied reports whether Vault refused the call with 403: a bad,
// expired or revoked token, or a policy that denies the path.
func IsPermissionDenied(err error) bool {
	code, ok := statusOf(err)
	return ok && code == http.StatusForbidden
}

// IsUnavailable reports whether Vault could not serve the call at all: no
// response, sealed or standby (5xx), rate limited (429) or not yet caught up
// (412). Retrying later may succeed without anyone changing anything.
func IsUnavailable(err error) bool {
	code, ok := statusOf(err)
	if !ok {
		return false
	}
	return code == 0 || code >= 500 || code == http.StatusTooManyRequests || code == http.StatusPreconditionFailed
}

// IsRejected reports whether Vault answered and refused the request's
// content (4xx other than 403, 412 and 429), e.g. a name the role forbids.
func IsRejected(err error) bool {
	code, ok := statusOf(err)
	return ok && code >= 400 && code < 500 && !IsPermissionDenied(err) && !IsUnavailable(err)
}
